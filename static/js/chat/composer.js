// The composer: a textarea that grows, Enter to send and Shift+Enter for a new line, Send (enabled by text or
// an uploaded image: an image alone is a message) that becomes Stop while an answer runs, the model picker,
// the per-conversation settings dialog (sent with the next send), and images (attach button, paste, drop; see
// attachments.js), allowed only for models that can read them.

import { Attachments } from "./attachments.js";
import { ModelMenu } from "./model_menu.js";

const NUMBER_PARAMS = ["temperature", "top_p", "max_tokens", "seed", "presence_penalty", "frequency_penalty"];
const INTEGER_PARAMS = new Set(["max_tokens", "seed"]);

export class Composer {
  constructor(app, form) {
    this.app = app;
    this.form = form;
    this.input = form.querySelector("#composer-input");
    this.sendButton = form.querySelector('button[type="submit"]');
    this.stopButton = form.querySelector('[data-action="stop"]');
    this.attachButton = form.querySelector('[data-action="attach"]');
    this.attachHint = form.querySelector("#attach-hint");
    this.fileInput = form.querySelector("#composer-file");
    this.dropZone = form.querySelector(".chat-composer");
    // Toasts sit just above the message box, however tall it grows (layout.css: --composer-height).
    new ResizeObserver(() => {
      document.documentElement.style.setProperty("--composer-height", `${form.offsetHeight}px`);
    }).observe(form);
    this.attachments = new Attachments(this, {
      tray: form.querySelector(".composer-attachments"),
      config: app.boot.uploads || { url: "", max_images: 0, max_bytes: 0 },
      csrfToken: app.boot.csrf_token,
      onChange: () => {
        this.updateSend();
        this.updateAttach();
      },
    });
    this.modelMenu = new ModelMenu(form.querySelector(".model-picker"), {
      onChange: () => {
        this.updateAttach();
        this.updateSend();
      },
    });
    this.settingsButton = form.querySelector('[data-action="open-settings"]');
    this.settingsDot = form.querySelector(".tool-dot");
    this.error = form.querySelector(".composer-error");
    this.dialog = document.getElementById("settings-dialog");
    this.settings = { system_prompt: "", params: {} };
    this.settingsDirty = false;
    this.running = false;

    this.renderModels();
    this.input.addEventListener("input", () => {
      this.autosize();
      if (this.error.dataset.kind !== "images") this.showError("");
      this.updateSend();
    });
    this.input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.submit();
      }
    });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    this.stopButton.addEventListener("click", () => this.app.stop());
    this.bindImages();
    this.settingsButton.addEventListener("click", () => this.openSettings());
    this.dialog.querySelector('[data-action="reset-settings"]').addEventListener("click", () => this.fillSettings({ system_prompt: "", params: {} }));
    this.dialog.addEventListener("close", () => this.closeSettings());
    this.dialog.querySelector("form").addEventListener("submit", (event) => {
      if (event.submitter?.value === "save" && !event.target.reportValidity()) event.preventDefault();
    });
    this.updateAttach();
  }

  // --- text ------------------------------------------------------------------------------------------

  autosize() {
    const input = this.input;
    input.style.height = "auto";
    input.style.height = `${input.scrollHeight}px`;
  }

  /** Something to send: words, or at least one uploaded image (an image alone asks about the picture). */
  get hasContent() {
    return Boolean(this.input.value.trim()) || this.attachments.ready.length > 0;
  }

  updateSend() {
    const images = this.attachments.count > 0;
    const blocked = images && (this.attachments.uploading || !this.canAttach);
    this.sendButton.disabled = !this.hasContent || blocked;
    if (images && !this.canAttach) {
      this.showError(`${this.model?.name ?? "This model"} can't read images. Remove them or pick a model that can.`);
    } else if (this.error.dataset.kind === "images") {
      this.showError("");
    }
  }

  focus() {
    this.input.focus();
  }

  setText(text) {
    this.input.value = text;
    this.autosize();
    this.updateSend();
  }

  /** Say what stops the message (`kind` "waiting": a note, not an error: it will go out by itself). */
  showError(text, kind = "") {
    this.error.textContent = text;
    this.error.hidden = !text;
    this.error.dataset.kind = kind || (text && text.includes("can't read images") ? "images" : "");
  }

  submit() {
    if (!this.hasContent || this.running || this.sendButton.disabled) return;
    const text = this.input.value.trim() ? this.input.value : "";
    if (this.app.send(text)) {
      this.setText("");
      this.showError("");
    }
  }

  // --- images ----------------------------------------------------------------------------------------

  get canAttach() {
    return Boolean(this.app.boot.uploads) && Boolean(this.model?.supports_images);
  }

  /** Attach files, or say why not. */
  addFiles(files) {
    if (!files.length) return;
    if (!this.canAttach) {
      this.showError(this.attachButton.title);
      return;
    }
    const problem = this.attachments.add(files);
    if (problem) this.showError(problem);
    else if (!this.error.dataset.kind) this.showError("");
  }

  bindImages() {
    this.attachButton.addEventListener("click", () => this.fileInput.click());
    this.fileInput.addEventListener("change", () => {
      this.addFiles([...this.fileInput.files]);
      this.fileInput.value = ""; // choosing the same file again fires change again
      this.input.focus();
    });
    // A pasted screenshot: attach it. Text pasted along with it (a copied web page) still goes in as text.
    this.input.addEventListener("paste", (event) => {
      const files = [...(event.clipboardData?.files || [])];
      if (!files.length) return;
      if (!event.clipboardData.types.includes("text/plain")) event.preventDefault();
      this.addFiles(files);
    });
    let depth = 0;
    const hasFiles = (event) => [...(event.dataTransfer?.types || [])].includes("Files");
    this.dropZone.addEventListener("dragenter", (event) => {
      if (!hasFiles(event)) return;
      event.preventDefault();
      depth += 1;
      this.dropZone.classList.add("is-dragging");
      this.dropZone.classList.toggle("is-refusing", !this.canAttach);
    });
    this.dropZone.addEventListener("dragover", (event) => {
      if (!hasFiles(event)) return;
      event.preventDefault();
      event.dataTransfer.dropEffect = this.canAttach ? "copy" : "none";
    });
    this.dropZone.addEventListener("dragleave", () => {
      depth = Math.max(0, depth - 1);
      if (!depth) this.dropZone.classList.remove("is-dragging", "is-refusing");
    });
    this.dropZone.addEventListener("drop", (event) => {
      if (!hasFiles(event)) return;
      event.preventDefault();
      depth = 0;
      this.dropZone.classList.remove("is-dragging", "is-refusing");
      this.addFiles([...event.dataTransfer.files]);
    });
    // A file dropped anywhere else must not navigate away from the chat.
    for (const type of ["dragover", "drop"]) {
      window.addEventListener(type, (event) => {
        if (hasFiles(event) && !this.dropZone.contains(event.target)) event.preventDefault();
      });
    }
  }

  setRunning(running) {
    this.running = running;
    const stopHadFocus = document.activeElement === this.stopButton;
    this.sendButton.hidden = running;
    this.stopButton.hidden = !running;
    if (!running && stopHadFocus) this.input.focus();
  }

  // --- models ----------------------------------------------------------------------------------------

  renderModels() {
    this.modelMenu.setModels(this.app.boot.models);
    this.selectModel(null);
  }

  /** Show the model `id` (a conversation's), else the person's default (the model they used last). */
  selectModel(id) {
    const models = this.app.boot.models;
    const chosen = models.find((m) => m.id === id) || models.find((m) => m.default) || models[0];
    this.modelMenu.select(chosen?.id ?? null);
    this.updateAttach();
  }

  /** The model just sent with becomes the default of the next new chat (the server remembers it too). */
  rememberModel() {
    const current = this.model;
    if (!current) return;
    for (const model of this.app.boot.models) model.default = model.id === current.id;
  }

  get model() {
    return this.modelMenu.selected;
  }

  updateAttach() {
    const model = this.model;
    const vision = Boolean(model?.supports_images);
    const full = this.attachments && this.attachments.count >= (this.app.boot.uploads?.max_images ?? 0);
    this.attachButton.disabled = !this.app.boot.uploads || !vision || full;
    let why = "Attach image";
    if (!this.app.boot.uploads) why = "Attaching images is turned off on this site";
    else if (!vision) why = `${model?.name ?? "This model"} can't read images. Pick a model marked “vision” to attach one.`;
    else if (full) why = `A message can carry at most ${this.app.boot.uploads.max_images} images`;
    this.attachButton.title = why;
    this.attachHint.textContent = why === "Attach image" ? "" : why;
    this.attachButton.classList.toggle("is-unavailable", !vision);
  }

  // --- settings --------------------------------------------------------------------------------------

  /** The settings of the conversation just opened (or none, for a new chat). */
  loadSettings(conversation) {
    this.settings = {
      system_prompt: conversation?.system_prompt || "",
      params: { ...(conversation?.params || {}) },
    };
    this.settingsDirty = false;
    this.updateSettingsDot();
  }

  /** What to send with the next `send`: only when changed here since the conversation was loaded. */
  takeSettings() {
    if (!this.settingsDirty) return {};
    return { params: { ...this.settings.params }, system_prompt: this.settings.system_prompt };
  }

  settingsSent() {
    this.settingsDirty = false;
  }

  updateSettingsDot() {
    const custom = Boolean(this.settings.system_prompt) || Object.keys(this.settings.params).length > 0;
    this.settingsDot.hidden = !custom;
    this.settingsButton.setAttribute("aria-label", custom ? "Chat settings (customised)" : "Chat settings");
  }

  fillSettings(settings) {
    const form = this.dialog.querySelector("form");
    form.elements.system_prompt.value = settings.system_prompt || "";
    for (const name of NUMBER_PARAMS) {
      const value = settings.params[name];
      form.elements[name].value = value === undefined || value === null ? "" : String(value);
    }
    form.elements.json_mode.checked = Boolean(settings.params.json_mode);
  }

  openSettings() {
    this.fillSettings(this.settings);
    this.dialog.returnValue = "";
    this.dialog.showModal();
  }

  closeSettings() {
    if (this.dialog.returnValue === "save") {
      const form = this.dialog.querySelector("form");
      const params = {};
      for (const name of NUMBER_PARAMS) {
        const raw = form.elements[name].value.trim();
        if (raw === "") continue;
        const value = INTEGER_PARAMS.has(name) ? Number.parseInt(raw, 10) : Number(raw);
        if (Number.isFinite(value)) params[name] = value;
      }
      if (form.elements.json_mode.checked) params.json_mode = true;
      this.settings = { system_prompt: form.elements.system_prompt.value, params };
      this.settingsDirty = true;
      this.updateSettingsDot();
    }
    this.settingsButton.focus();
  }
}
