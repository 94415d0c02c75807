// rehost console: progressive enhancement only. Every page works without
// this file; with it, times show in the browser's time zone, the live parts
// of a page refresh without a reload, and the registration form shows only
// the fields of the chosen kind of credentials.
"use strict";

function localiseTimes(root) {
  root.querySelectorAll("time[datetime]").forEach(function (el) {
    var d = new Date(el.getAttribute("datetime"));
    if (isNaN(d)) return;
    if (!el.title) el.title = el.textContent;
    el.textContent = d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
  });
}

function zoneName() {
  try { return Intl.DateTimeFormat().resolvedOptions().timeZone || "your time zone"; } catch (e) { return "your time zone"; }
}

// Live regions: an element with data-live="URL" is replaced by the HTML the
// URL returns, every data-every milliseconds (default 2000), until that HTML
// says it is final.
function poll(el) {
  var every = parseInt(el.getAttribute("data-every"), 10) || 2000;
  var url = el.getAttribute("data-live");
  fetch(url, { credentials: "same-origin", cache: "no-store" }).then(function (resp) {
    if (!resp.ok) throw new Error(resp.status);
    return resp.text();
  }).then(function (html) {
    el.innerHTML = html;
    localiseTimes(el);
    if (el.querySelector("[data-final]")) {
      el.removeAttribute("data-live");
      return;
    }
    setTimeout(function () { poll(el); }, every);
  }).catch(function () {
    // A lost session or a restart: say so once, keep the last state shown.
    var note = document.createElement("p");
    note.className = "flash error";
    note.textContent = "Live updates stopped: reload the page.";
    el.appendChild(note);
  });
}

function credentialFields() {
  var form = document.getElementById("aws-form");
  if (!form) return;
  var groups = form.querySelectorAll("[data-cred]");
  function show() {
    var checked = form.querySelector("input[name=cred]:checked");
    var mode = checked ? checked.value : "";
    groups.forEach(function (g) {
      g.hidden = g.getAttribute("data-cred").split(" ").indexOf(mode) < 0;
    });
  }
  form.querySelectorAll("input[name=cred]").forEach(function (r) { r.addEventListener("change", show); });
  show();
}

// The job form: the fields of incremental mode (sub-hour frequencies, no
// conversion) show only when that mode is chosen. A hidden field keeps its
// value, so the server's check of the combination still speaks.
function modeFields() {
  var form = document.getElementById("job-form");
  if (!form) return;
  var groups = form.querySelectorAll("[data-mode]");
  function show() {
    var checked = form.querySelector("input[name=mode]:checked");
    var mode = checked ? checked.value : "full";
    groups.forEach(function (g) { g.hidden = g.getAttribute("data-mode") !== mode; });
  }
  form.querySelectorAll("input[name=mode]").forEach(function (r) { r.addEventListener("change", show); });
  show();
}

// datetime-local fields hold the browser's local time: send its offset so
// the connector reads them right, and say which zone they are in.
function timeZones() {
  document.querySelectorAll("form").forEach(function (form) {
    if (!form.querySelector("input[type=datetime-local]")) return;
    form.addEventListener("submit", function () {
      var field = form.querySelector("input[type=datetime-local]");
      var offset = form.querySelector("input[name=tz_offset]");
      if (!offset || !field.value) return;
      offset.value = String(new Date(field.value).getTimezoneOffset());
    });
  });
  document.querySelectorAll("[data-zone]").forEach(function (el) { el.textContent = zoneName(); });
}

document.addEventListener("DOMContentLoaded", function () {
  localiseTimes(document);
  var note = document.getElementById("tz-note");
  if (note) note.textContent = "times are shown in " + zoneName();
  document.querySelectorAll("[data-live]").forEach(function (el) { setTimeout(function () { poll(el); }, 1000); });
  credentialFields();
  modeFields();
  timeZones();
  // Errors after a submission: move focus to their summary.
  var errs = document.getElementById("form-errors");
  if (errs) errs.focus();
});
