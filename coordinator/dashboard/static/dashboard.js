// Tocsin dashboard: draws a country's timeline from server-side buckets (never raw rows).
"use strict";
const KIND_COLOURS = {blackout: "#b3261e", domestic_only: "#8e44ad", throttling: "#e67e22",
                      dns_tampering: "#2c7fb8", http_blocking: "#16a085"};

function eventShapes(events) {
  const shapes = [], notes = [];
  for (const ev of events) {
    const colour = KIND_COLOURS[ev.kind] || "#555";
    shapes.push({type: "rect", xref: "x", yref: "paper", x0: ev.start, x1: ev.end, y0: 0, y1: 1,
                 fillcolor: colour, opacity: 0.15, line: {width: 0}, name: "event " + ev.event_id});
    for (const [a, b] of ev.restorations) {
      shapes.push({type: "rect", xref: "x", yref: "paper", x0: a, x1: b, y0: 0, y1: 1, fillcolor: "#2ecc71",
                   opacity: 0.35, line: {width: 1, color: "#1b7f3b", dash: "dot"}, name: "restoration " + ev.event_id});
    }
    notes.push({x: ev.start, y: 1, xref: "x", yref: "paper", yanchor: "bottom", showarrow: false,
                text: ev.kind.replace("_", " ") + " (" + ev.state + ")", font: {color: colour, size: 11}});
  }
  return {shapes, notes};
}

function drawTimeline(data) {
  const {shapes, notes} = eventShapes(data.events);
  const common = {margin: {t: 30, r: 10, b: 40, l: 60}, shapes, annotations: notes, hovermode: "x unified",
                  legend: {orientation: "h"}, xaxis: {type: "date"}};
  const reach = data.series.map(s => ({x: s.t, y: s.reach, name: s.label, mode: "lines", type: "scatter",
                                       connectgaps: false}));
  const tput = data.series.filter(s => s.tput_mbps.some(v => v !== null))
                          .map(s => ({x: s.t, y: s.tput_mbps, name: s.label, mode: "lines", type: "scatter"}));
  const config = {responsive: true, displaylogo: false};
  Plotly.newPlot("reach", reach, {...common, yaxis: {title: "reachability (share ok)", range: [0, 1.05]}}, config);
  Plotly.newPlot("tput", tput, {...common, yaxis: {title: "throughput (Mbit/s)"}}, config);
  document.getElementById("summary").textContent =
    `${data.measurements} measurements in ${data.bucket_s} s buckets, ${data.series.length} networks, ` +
    `${data.events.length} events (${data.since} to ${data.until} UTC)`;
  document.body.dataset.rendered = "1";
}

// `request`: a URL, or the fetch the page started before plotly.js loaded (window.tocsinTimeline).
async function loadTimeline(request) {
  const summary = document.getElementById("summary");
  let resp;
  try {
    resp = await (typeof request === "string" ? fetch(request) : request);
  } catch (err) {
    summary.textContent = "could not load the timeline: " + err;
    return;
  }
  if (!resp.ok) {
    summary.textContent = "could not load the timeline: " + resp.status;
    return;
  }
  drawTimeline(await resp.json());
}

if (window.tocsinTimeline) {
  loadTimeline(window.tocsinTimeline);
}
