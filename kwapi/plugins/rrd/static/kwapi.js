// kwapi-rrd page: refresh graphs in place, filter probes, keep the selection across visits.
"use strict";
(function () {
  const HIDDEN_KEY = "kwapi-rrd.hidden";
  const FILTER_KEY = "kwapi-rrd.filter";

  function load(key, fallback) {
    try {
      const value = JSON.parse(window.localStorage.getItem(key));
      return value === null ? fallback : value;
    } catch (error) {
      return fallback;
    }
  }

  function save(key, value) {
    try { window.localStorage.setItem(key, JSON.stringify(value)); } catch (error) { /* private mode */ }
  }

  // Reload one image off-screen and swap it in once decoded, so nothing flickers.
  function refresh(img) {
    const base = img.dataset.src || img.getAttribute("src").split("?")[0];
    img.dataset.src = base;
    const next = new Image();
    next.onload = function () { img.src = next.src; };
    next.src = base + "?t=" + Date.now();
  }

  function startRefresh() {
    const seconds = Number(document.body.dataset.refresh) || 5;
    window.setInterval(function () {
      document.querySelectorAll("img.graph").forEach(function (img) {
        const figure = img.closest("figure");
        if (!figure || !figure.hidden) { refresh(img); }
      });
    }, seconds * 1000);
  }

  function setUpProbes() {
    const list = document.getElementById("probe-list");
    if (!list) { return; }
    const filter = document.getElementById("filter");
    const hidden = new Set(load(HIDDEN_KEY, []));
    filter.value = load(FILTER_KEY, "");

    function apply() {
      const text = filter.value.trim().toLowerCase();
      let shown = 0;
      list.querySelectorAll("li").forEach(function (item) {
        const probe = item.dataset.probe;
        const matches = probe.toLowerCase().includes(text);
        item.hidden = !matches;
        item.querySelector("input.select").checked = !hidden.has(probe);
        if (matches) { shown += 1; }
      });
      document.querySelectorAll("#graphs figure").forEach(function (figure) {
        const probe = figure.dataset.probe;
        figure.hidden = hidden.has(probe) || !probe.toLowerCase().includes(text);
      });
      document.getElementById("filter-empty").hidden = shown > 0;
    }

    list.addEventListener("change", function (event) {
      const box = event.target;
      if (!box.classList.contains("select")) { return; }
      if (box.checked) { hidden.delete(box.value); } else { hidden.add(box.value); }
      save(HIDDEN_KEY, Array.from(hidden));
      apply();
    });
    filter.addEventListener("input", function () { save(FILTER_KEY, filter.value); apply(); });
    document.getElementById("show-all").addEventListener("click", function () {
      hidden.clear(); save(HIDDEN_KEY, []); apply();
    });
    document.getElementById("hide-all").addEventListener("click", function () {
      list.querySelectorAll("li:not([hidden])").forEach(function (item) { hidden.add(item.dataset.probe); });
      save(HIDDEN_KEY, Array.from(hidden)); apply();
    });
    apply();
  }

  function number(value) {
    return Math.abs(value) >= 100 ? value.toFixed(0) : value.toPrecision(3);
  }

  // Tooltip of a graph: latest value, minimum and maximum over the period, from /data/.
  function describe(figure) {
    const meter = figure.dataset.meter;
    return fetch(figure.dataset.series, { cache: "no-store" })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (body) {
        const series = body && body.meters[meter];
        if (!series) { return; }
        const unit = series.unit ? " " + series.unit : "";
        let last = null;
        let last_at = null;
        series.average.forEach(function (value, index) {
          if (value !== null) { last = value; last_at = body.timestamps[index]; }
        });
        const lows = series.min.filter(function (v) { return v !== null; });
        const highs = series.max.filter(function (v) { return v !== null; });
        const img = figure.querySelector("img");
        if (last === null) { img.title = figure.dataset.probe + ": no data in this period"; return; }
        img.title = figure.dataset.probe + " at " + new Date(last_at * 1000).toLocaleTimeString() +
          ": " + number(last) + unit +
          " (min " + number(Math.min.apply(null, lows)) + unit +
          ", max " + number(Math.max.apply(null, highs)) + unit + ")";
      })
      .catch(function () { /* keep the previous tooltip */ });
  }

  function setUpTooltips() {
    document.querySelectorAll("figure[data-series]").forEach(function (figure) {
      figure.addEventListener("mouseenter", function () { describe(figure); });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    setUpTooltips();
    setUpProbes();
    startRefresh();
  });
}());
