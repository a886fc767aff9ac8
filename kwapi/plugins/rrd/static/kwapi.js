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

  // Graphs in the viewport, as IntersectionObserver reports them.
  const inView = new Set();
  // Graphs that missed a refresh while out of view: refreshed as soon as they come back.
  const stale = new Set();
  // Graphs whose next image is being fetched: never two fetches of one graph at a time.
  const fetching = new Set();
  const watchesView = "IntersectionObserver" in window;

  // Fetched, well or not (a graph that failed, say while rrdcached restarts, is retried);
  // false for a lazy graph the browser has not fetched yet, or one still loading.
  function settled(img) {
    return img.complete;
  }

  // Reload one image off-screen and swap it in once decoded, so nothing flickers.
  function refresh(img) {
    if (fetching.has(img)) { return; }
    const base = img.dataset.src || img.getAttribute("src").split("?")[0];
    img.dataset.src = base;
    const next = new Image();
    fetching.add(img);
    next.onload = function () { fetching.delete(img); img.src = next.src; };
    next.onerror = function () { fetching.delete(img); };
    next.src = base + "?t=" + Date.now();
  }

  // Refresh the graphs in view that have been fetched; the others wait until they are seen
  // (a lazy graph never scrolled to is not fetched at all).
  function refreshVisible() {
    document.querySelectorAll("img.graph").forEach(function (img) {
      if (!settled(img)) { return; }
      const figure = img.closest("figure");
      const shown = !(figure && figure.hidden) && (!watchesView || inView.has(img));
      if (shown) {
        stale.delete(img);
        refresh(img);
      } else {
        stale.add(img);
      }
    });
  }

  function watchView() {
    if (!watchesView) { return; }
    const observer = new IntersectionObserver(function (entries) {
      entries.forEach(function (entry) {
        const img = entry.target;
        if (!entry.isIntersecting) { inView.delete(img); return; }
        inView.add(img);
        if (stale.delete(img)) { refresh(img); }
      });
    });
    document.querySelectorAll("img.graph").forEach(function (img) { observer.observe(img); });
  }

  function startRefresh() {
    const seconds = Number(document.body.dataset.refresh) || 5;
    watchView();
    window.setInterval(refreshVisible, seconds * 1000);
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
