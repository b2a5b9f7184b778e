// The import / export page: uploads the chosen file to /api/imports and polls the job for progress and the
// report of what was skipped. No inline script (strict CSP): this module is the page's only code.

const form = document.querySelector(".import-form");
const input = form.querySelector(".import-file");
const nameNote = form.querySelector(".import-file-name");
const statusBox = document.querySelector(".import-status");
const statusText = statusBox.querySelector(".import-status-text");
const progress = statusBox.querySelector(".import-progress");
const skipped = statusBox.querySelector(".import-skipped");
const csrf = form.querySelector("[name=csrfmiddlewaretoken]").value;
const submit = form.querySelector("button[type=submit]");

const plural = (n, word) => `${n.toLocaleString()} ${word}${n === 1 ? "" : "s"}`;

input.addEventListener("change", () => {
  nameNote.textContent = input.files[0]?.name || ".zip or .json";
});

function show(state, text) {
  statusBox.hidden = false;
  statusBox.dataset.state = state;
  statusText.textContent = text;
}

function report(r) {
  const parts = [`Imported ${plural(r.conversations, "conversation")} (${plural(r.messages, "message")}${r.images ? `, ${plural(r.images, "image")}` : ""})`];
  if (r.already_here) parts.push(`already here: ${plural(r.already_here, "conversation")}`);
  return `${parts.join("; ")}${r.format ? ` from ${r.format}` : ""}.`;
}

function render(job) {
  // The bar exists only while the job runs: a hidden <progress> without a value still animates.
  progress.hidden = !(job.status === "running" || job.status === "queued");
  if (job.status === "failed") {
    show("failed", job.error || "The import failed. Nothing was imported.");
    return true;
  }
  if (job.status === "done") {
    const r = job.report;
    const instructions = r.custom_instructions ? " Your custom instructions were imported too." : "";
    show("done", `${report(r)}${instructions}`);
    const lines = r.skipped.map((s) => `Left out: ${s.reason}: ${s.count.toLocaleString()}`);
    for (const problem of r.problems || []) lines.push(`Not imported: ${problem}`);
    skipped.replaceChildren(...lines.map((text) => {
      const li = document.createElement("li");
      li.textContent = text;
      return li;
    }));
    return true;
  }
  if (job.status === "queued") {
    show("running", "Waiting for other imports to finish…");
    progress.removeAttribute("value");
    return false;
  }
  show("running", job.done ? `Importing… ${plural(job.done, "conversation")} so far` : "Reading the file…");
  progress.value = Math.round(100 * (job.progress || 0));
  return false;
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!input.files.length) return;
  submit.disabled = true;
  skipped.replaceChildren();
  show("running", "Uploading…");
  progress.hidden = false;
  progress.removeAttribute("value");
  try {
    const body = new FormData();
    body.append("file", input.files[0]);
    let response = await fetch(form.action, { method: "POST", body, headers: { "X-CSRFToken": csrf, Accept: "application/json" }, credentials: "same-origin" });
    let job = await response.json();
    if (!response.ok) throw new Error(job?.error?.message || "The upload failed.");
    while (!render(job)) {
      await new Promise((resolve) => setTimeout(resolve, 700));
      response = await fetch(`${form.dataset.statusUrl}/${job.id}`, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      job = await response.json();
      if (!response.ok) throw new Error(job?.error?.message || "Lost track of the import.");
    }
  } catch (error) {
    progress.hidden = true;
    show("failed", error.message);
  } finally {
    submit.disabled = false;
  }
});
