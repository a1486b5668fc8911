// chaosgate dashboard: live run view over server-sent events and the
// kill-switch confirmation. No framework.
(function () {
  "use strict";
  var kill = document.getElementById("kill-form");
  if (kill) {
    kill.addEventListener("submit", function (e) {
      if (!window.confirm("Abort every live run? Each recovers its faults.")) { e.preventDefault(); }
    });
  }
  var live = document.querySelector(".live[data-run]");
  if (document.getElementById("idle") && window.fetch) {
    // Idle dashboard: show a run as soon as one starts (API, schedule, or
    // a command on the same data directory).
    window.setInterval(function () {
      window.fetch("/api/v1/runs", { credentials: "same-origin" }).then(function (r) { return r.ok ? r.json() : null; }).then(function (j) {
        if (j && j.runs && j.runs.some(function (x) { return x.status === "running"; })) { window.location.reload(); }
      }).catch(function () {});
    }, 1000);
  }
  // Charts of a live run: the server draws them; fetch them again every
  // two seconds while the run goes.
  var charts = document.querySelector("[data-charts]");
  function refreshCharts() {
    if (!charts || !window.fetch) { return; }
    window.fetch(charts.getAttribute("data-charts"), { credentials: "same-origin" }).then(function (r) { return r.ok ? r.text() : null; }).then(function (html) {
      if (html !== null && html.trim() !== "") { charts.innerHTML = html; }
    }).catch(function () {});
  }
  if (charts) { refreshCharts(); window.setInterval(refreshCharts, 2000); }
  if (!live || !window.EventSource) { return; }
  var run = live.getAttribute("data-run");
  var events = document.getElementById("events");
  function text(id, v) { var el = document.getElementById(id); if (el) { el.textContent = v; } }
  function line(ev) {
    if (!events) { return; }
    var li = document.createElement("li");
    li.textContent = ev.t.replace("T", " ").slice(0, 19) + " [" + ev.kind + "] " + (ev.phase || "") + " " + (ev.msg || "");
    events.appendChild(li);
    while (events.children.length > 300) { events.removeChild(events.firstChild); }
    events.scrollTop = events.scrollHeight;
  }
  function state(st) {
    text("phase", st.phase); text("weight", st.weight + "%");
    text("faults", (st.active_faults || []).join(", "));
    var arms = document.getElementById("arms");
    if (arms && st.arms) {
      arms.textContent = "";
      Object.keys(st.arms).sort().forEach(function (k) {
        var a = st.arms[k], tr = document.createElement("tr");
        [k, (a.success_ratio * 100).toFixed(2) + "%", a.p99_ms.toPrecision(4) + " ms", String(a.requests)].forEach(function (v) {
          var td = document.createElement("td"); td.textContent = v; tr.appendChild(td);
        });
        arms.appendChild(tr);
      });
    }
    var steps = document.getElementById("steps");
    if (steps && st.steps) {
      steps.textContent = "";
      st.steps.forEach(function (s) { var li = document.createElement("li"); li.textContent = s; steps.appendChild(li); });
    }
  }
  var src = new EventSource("/api/v1/runs/" + encodeURIComponent(run) + "/events");
  ["info", "phase", "fault", "verdict"].forEach(function (k) {
    src.addEventListener(k, function (m) { line(JSON.parse(m.data)); });
  });
  src.addEventListener("state", function (m) { var ev = JSON.parse(m.data); if (ev.state) { state(ev.state); } });
  src.addEventListener("end", function (m) {
    line(JSON.parse(m.data)); src.close();
    window.setTimeout(function () { window.location.reload(); }, 1500);
  });
})();
