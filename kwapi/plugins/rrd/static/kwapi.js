// kwapi-rrd page: refresh graphs in place, filter probes, keep the selection across visits,
// and send the From / To range in the browser's time zone.
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
    const seconds = Number(document.body.dataset.refresh);
    if (!(seconds > 0)) { return; }  // a range page is drawn once
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

  // "2026-12-06T14:02:10" in the browser's zone, as a datetime-local field shows it.
  function localValue(seconds) {
    const date = new Date(seconds * 1000);
    const pad = function (n) { return String(n).padStart(2, "0"); };
    return date.getFullYear() + "-" + pad(date.getMonth() + 1) + "-" + pad(date.getDate()) +
      "T" + pad(date.getHours()) + ":" + pad(date.getMinutes()) + ":" + pad(date.getSeconds());
  }

  // The From / To fields show the range in the browser's zone and send it as Unix seconds,
  // so the server reads the same instants whatever its own zone (without this script the
  // form still works, read in the server's zone).
  function setUpRange() {
    const form = document.getElementById("range");
    if (!form) { return; }
    const start = form.elements.start;
    const end = form.elements.end;
    start.value = localValue(Number(form.dataset.start));
    end.value = localValue(Number(form.dataset.end));
    form.addEventListener("submit", function (event) {
      const from = new Date(start.value).getTime() / 1000;
      const to = new Date(end.value).getTime() / 1000;
      if (!isFinite(from) || !isFinite(to)) { return; }  // let the server explain
      event.preventDefault();
      window.location.assign(form.action + "?start=" + Math.floor(from) + "&end=" + Math.ceil(to));
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    setUpRange();
    setUpTooltips();
    setUpProbes();
    startRefresh();
  });
}());
