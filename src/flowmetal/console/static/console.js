// Flowmetal console: progressive enhancement only (every page works without it).
// Text from programs is never inserted as HTML here, except fragments the server
// rendered and escaped itself (the programs list's rows and counts).
"use strict";

function every(seconds, fn) {
  let busy = false;
  setInterval(async () => {
    if (busy || document.hidden) return;
    busy = true;
    try { await fn(); } catch (e) { /* the server may be restarting: try again next time */ }
    busy = false;
  }, seconds * 1000);
}

// the programs list: refresh the rows and counts of the first page in place
function liveList() {
  const table = document.getElementById("programs");
  if (!table || !table.dataset.live) return;
  every(2, async () => {
    const r = await fetch(table.dataset.live + location.search, { credentials: "same-origin" });
    if (!r.ok) return;
    const part = await r.json();
    const body = document.getElementById("programs-body");
    if (body.innerHTML !== part.rows) body.innerHTML = part.rows;
    const counts = document.getElementById("counts");
    if (counts.innerHTML !== part.counts) counts.innerHTML = part.counts;
  });
}

// a program's page at its latest event: reload when the program moves on
function liveProgram() {
  const seq = document.getElementById("last-seq");
  if (!seq || seq.dataset.live !== "yes" || new URLSearchParams(location.search).has("at")) return;
  every(2, async () => {
    const r = await fetch(seq.dataset.poll, { credentials: "same-origin" });
    if (!r.ok) return;
    const now = await r.json();
    if (String(now.last_seq) !== seq.dataset.seq) location.reload();
  });
}

function copyButtons() {
  for (const button of document.querySelectorAll("button.copy")) {
    button.addEventListener("click", async () => {
      const text = button.dataset.copy;
      try {
        await navigator.clipboard.writeText(text);
      } catch (e) {  // no clipboard API (not a secure context): select the text instead
        const input = button.previousElementSibling && button.previousElementSibling.querySelector("input");
        if (input) { input.select(); document.execCommand("copy"); }
      }
      button.textContent = "Copied";
      setTimeout(() => { button.textContent = "Copy link"; }, 1500);
    });
  }
}

function confirmations() {
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }
}

// , and . step back and forward through events (like the links' access keys)
function stepKeys() {
  document.addEventListener("keydown", (event) => {
    if (event.target.closest("input, textarea") || event.metaKey || event.ctrlKey || event.altKey) return;
    const id = { ",": "step-back", ".": "step-forward" }[event.key];
    const link = id && document.getElementById(id);
    if (link) location.href = link.href;
  });
}

// the source panel scrolls to the marked line
function showLine() {
  const mark = document.querySelector("ol.code li.failing, ol.code li.current");
  if (mark) mark.parentElement.scrollTop = mark.offsetTop - 120;
}

document.addEventListener("DOMContentLoaded", () => {
  liveList();
  liveProgram();
  copyButtons();
  confirmations();
  stepKeys();
  showLine();
});
