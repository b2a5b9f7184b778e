// Images waiting to be sent: the tray of thumbnails above the message box. Files come from the attach
// button, a paste or a drop; each is uploaded at once (POST boot.uploads.url, one file per request, with
// upload progress) and the turn then carries the ids the server answered. The server checks and cleans every
// file; the checks here (type, size, count) only save a pointless upload.

import { h, icon } from "./dom.js";

const IMAGE_TYPES = /^image\/(png|jpeg|webp|gif|heic|heif)$/;
const IMAGE_NAMES = /\.(png|jpe?g|webp|gif|heic|heif)$/i;

let nextKey = 0;

function formatMegabytes(bytes) {
  return `${Math.round((bytes / (1024 * 1024)) * 10) / 10} MB`;
}

/** Does this File look like an image we take? (HEIC often arrives with an empty type.) */
export function looksLikeImage(file) {
  return IMAGE_TYPES.test(file.type) || (!file.type && IMAGE_NAMES.test(file.name)) || file.type.startsWith("image/");
}

export class Attachments {
  constructor(composer, { tray, config, csrfToken, onChange }) {
    this.composer = composer;
    this.tray = tray;
    this.config = config; // {url, max_images, max_bytes}
    this.csrfToken = csrfToken;
    this.onChange = onChange;
    this.items = [];
  }

  get uploading() {
    return this.items.some((item) => item.status === "uploading");
  }

  get ready() {
    return this.items.filter((item) => item.status === "done");
  }

  get count() {
    return this.items.length;
  }

  /** Add files (from the picker, a paste or a drop). Returns a message when some were left out. */
  add(files) {
    const images = [...files].filter(looksLikeImage);
    const refused = files.length - images.length;
    let message = "";
    for (const file of images) {
      if (this.items.length >= this.config.max_images) {
        message = `A message can carry at most ${this.config.max_images} images.`;
        break;
      }
      const item = { key: `a${(nextKey += 1)}`, file, status: "uploading", progress: 0, error: "", notice: "" };
      item.preview = URL.createObjectURL(file);
      this.items.push(item);
      if (file.size === 0) this.fail(item, "The file is empty.");
      else if (file.size > this.config.max_bytes) {
        this.fail(item, `The image is larger than ${formatMegabytes(this.config.max_bytes)}. Send a smaller one.`);
      } else this.upload(item);
    }
    if (refused && !message) message = "Only images can be attached (PNG, JPEG, WEBP, GIF or HEIC).";
    this.render();
    return message;
  }

  upload(item) {
    const xhr = new XMLHttpRequest();
    item.xhr = xhr;
    const form = new FormData();
    form.append("file", item.file, item.file.name || "image");
    xhr.open("POST", this.config.url);
    xhr.setRequestHeader("X-CSRFToken", this.csrfToken);
    xhr.responseType = "json";
    xhr.upload.addEventListener("progress", (event) => {
      if (!event.lengthComputable) return;
      item.progress = event.loaded / event.total;
      this.renderProgress(item);
    });
    xhr.addEventListener("load", () => {
      item.xhr = null;
      const body = xhr.response || {};
      if (xhr.status === 201 && body.id) {
        Object.assign(item, { status: "done", progress: 1, id: body.id, url: body.url, notice: body.notice || "" });
      } else if (xhr.status === 403) {
        this.fail(item, "Your session has changed. Reload the page and attach the image again.", false);
      } else if (xhr.status === 401) {
        this.fail(item, "You have been logged out. Log in again to attach images.", false);
      } else {
        this.fail(item, body.error?.message || `The upload failed (HTTP ${xhr.status}). Try again.`, false);
      }
      this.render();
    });
    xhr.addEventListener("error", () => {
      item.xhr = null;
      this.fail(item, "The upload failed. Check your connection and try again.");
    });
    xhr.send(form);
  }

  fail(item, message, render = true) {
    item.status = "error";
    item.error = message;
    if (render) this.render();
  }

  remove(key) {
    const index = this.items.findIndex((item) => item.key === key);
    if (index < 0) return;
    const [item] = this.items.splice(index, 1);
    item.xhr?.abort();
    if (item.status === "done") {
      // Free the server's copy now rather than at the next purge; nothing waits for the answer.
      fetch(item.url, { method: "DELETE", headers: { "X-CSRFToken": this.csrfToken }, credentials: "same-origin" }).catch(() => {});
    }
    this.release(item);
    this.render();
    // Keep the keyboard somewhere sensible: the next thumbnail's remove button, or the message box.
    const buttons = this.tray.querySelectorAll(".attachment-remove");
    (buttons[Math.min(index, buttons.length - 1)] || this.composer.input).focus();
  }

  release(item) {
    if (item.preview) URL.revokeObjectURL(item.preview);
    item.preview = null;
  }

  /** The uploaded images for a send; they leave the tray (failed ones are dropped). */
  take() {
    const taken = this.ready;
    for (const item of this.items) if (item.status === "error") this.release(item);
    this.items = this.items.filter((item) => item.status === "uploading");
    this.render();
    return taken;
  }

  /** Put images back after a send that the server refused. */
  restore(items) {
    if (!items?.length) return;
    const keys = new Set(this.items.map((item) => item.key));
    this.items = [...items.filter((item) => !keys.has(item.key)), ...this.items];
    this.render();
  }

  /** The send was accepted: the images belong to the message now. */
  sent(items) {
    for (const item of items || []) this.release(item);
  }

  clear() {
    for (const item of this.items) {
      item.xhr?.abort();
      this.release(item);
    }
    this.items = [];
    this.render();
  }

  // --- drawing ---------------------------------------------------------------------------------------

  render() {
    this.tray.replaceChildren(...this.items.map((item) => this.renderItem(item)));
    this.tray.hidden = this.items.length === 0;
    this.onChange?.();
  }

  renderItem(item) {
    const name = item.file?.name || "image";
    const source = item.status === "done" && item.url ? item.url : item.preview;
    const thumb = h("img", { class: "attachment-thumb", src: source, alt: name, draggable: "false" });
    // HEIC can't be previewed by most browsers: show a plain tile until the server's JPEG is there.
    thumb.addEventListener("error", () => thumb.classList.add("is-broken"), { once: true });
    const remove = h("button", {
      type: "button",
      class: "attachment-remove",
      "aria-label": "Remove image",
      title: `Remove ${name}`,
      dataset: { key: item.key },
    }, icon("close"));
    remove.addEventListener("click", () => this.remove(item.key));
    const failed = item.status === "error";
    const frame = h("div", { class: "attachment-frame" }, thumb);
    if (failed) frame.append(icon("alert", "icon attachment-alert"));
    if (item.status === "uploading") frame.append(this.progressBar(item, name));
    const li = h("li", { class: `attachment is-${item.status}`, dataset: { key: item.key } }, frame);
    if (failed) {
      // The reason sits beside the thumbnail, and the remove button after it (not over the words).
      li.append(h("p", { class: "attachment-error", role: "alert" }, h("strong", { text: name }), " ", item.error), remove);
    } else {
      frame.append(remove);
      if (item.notice) li.append(h("p", { class: "attachment-notice", text: item.notice }));
    }
    return li;
  }

  progressBar(item, name) {
    const bar = h("progress", { class: "attachment-progress", max: "100", "aria-label": `Uploading ${name}` });
    bar.value = Math.round(item.progress * 100);
    item.bar = bar;
    return bar;
  }

  renderProgress(item) {
    if (item.bar) item.bar.value = Math.round(item.progress * 100);
  }
}
