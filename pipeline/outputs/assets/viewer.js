// The 3D view of report.html: a class picker, a sample picker within it, and a GT toggle.
// Its data is the JSON in <script id="pointad-clouds">: per class, a list of clouds whose arrays are
// {dtype, bdata} (little-endian, base64), decoded here into typed arrays for Plotly.
(function () {
  "use strict";
  var TYPES = {f4: Float32Array, u1: Uint8Array, i4: Int32Array};

  function decode(spec) {
    var raw = atob(spec.bdata), bytes = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
    return new TYPES[spec.dtype](bytes.buffer);
  }

  function column(xyz, axis) {
    var out = new Float32Array(xyz.length / 3);
    for (var i = 0; i < out.length; i++) out[i] = xyz[3 * i + axis];
    return out;
  }

  function traces(cloud, vmax, showGt) {
    var xyz = decode(cloud.pos), score = decode(cloud.score), gt = decode(cloud.gt);
    var x = column(xyz, 0), y = column(xyz, 1), z = column(xyz, 2);
    var gx = [], gy = [], gz = [];
    for (var i = 0; i < gt.length; i++) if (gt[i]) { gx.push(x[i]); gy.push(y[i]); gz.push(z[i]); }
    return [
      {type: "scatter3d", mode: "markers", name: "point score", x: x, y: y, z: z,
       marker: {size: 2, color: score, colorscale: "Jet", cmin: 0, cmax: vmax,
                colorbar: {title: {text: "score"}, thickness: 12}},
       hovertemplate: "score %{marker.color:.3f}<extra></extra>"},
      {type: "scatter3d", mode: "markers", name: "ground truth", x: gx, y: gy, z: gz,
       visible: showGt, marker: {size: 3, color: "rgba(255,255,255,0.9)", line: {color: "black", width: 1}},
       hoverinfo: "skip"}
    ];
  }

  function start() {
    var holder = document.getElementById("pointad-clouds");
    var plot = document.getElementById("cloud3d");
    if (!holder || !plot) return;
    var data = JSON.parse(holder.textContent);
    var classPick = document.getElementById("pick-class");
    var samplePick = document.getElementById("pick-sample");
    var gtBox = document.getElementById("show-gt");
    var caption = document.getElementById("cloud-caption");
    var classes = Object.keys(data.classes);

    classes.forEach(function (name) { classPick.add(new Option(name, name)); });

    function fillSamples() {
      samplePick.innerHTML = "";
      data.classes[classPick.value].clouds.forEach(function (c, i) {
        var label = c.label === 1 ? "anomalous" : (c.label === 0 ? "good" : "unlabelled");
        samplePick.add(new Option(c.id + " (" + label + ", global " + c.global_score.toFixed(4) + ")", String(i)));
      });
    }

    function draw() {
      var group = data.classes[classPick.value];
      var cloud = group.clouds[Number(samplePick.value)];
      var gtCount = cloud.gt_points;
      gtBox.disabled = gtCount === 0;
      Plotly.react(plot, traces(cloud, group.vmax, gtBox.checked && gtCount > 0), {
        margin: {l: 0, r: 0, t: 0, b: 0}, height: 560, showlegend: false,
        scene: {aspectmode: "data", xaxis: {title: {text: "x"}}, yaxis: {title: {text: "y"}},
                zaxis: {title: {text: "z"}}}
      }, {displaylogo: false, responsive: true});
      caption.textContent = cloud.id + ": " + cloud.shown + " of " + cloud.n_points + " points drawn (every one of its "
        + gtCount + " GT points kept), colour = point score on 0.." + group.vmax.toFixed(3) + " (the class's highest).";
    }

    classPick.addEventListener("change", function () { fillSamples(); draw(); });
    samplePick.addEventListener("change", draw);
    gtBox.addEventListener("change", function () {
      Plotly.restyle(plot, {visible: gtBox.checked}, [1]);
    });
    // "view in 3D" beside an error case: pick its class and sample, draw, and scroll up to the view
    Array.prototype.forEach.call(document.querySelectorAll("button.show3d"), function (button) {
      button.addEventListener("click", function () {
        var name = button.getAttribute("data-class"), id = button.getAttribute("data-sample");
        var index = data.classes[name].clouds.findIndex(function (c) { return c.id === id; });
        classPick.value = name;
        fillSamples();
        samplePick.value = String(index);
        draw();
        document.getElementById("view3d").scrollIntoView();
      });
    });
    if (classes.length) { fillSamples(); draw(); }
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
