// The conversation pane: one <article> per message on the active branch, kept in step with the messages the
// app holds. Answers render as sanitised markdown at most once per animation frame; the view follows the
// bottom only while the reader is there, otherwise a "Jump to latest" button appears.
//
// Smooth reveal: a quiet server sends an answer's text in frames up to 200 ms apart (CHAT_QUIET_FRAME_INTERVAL,
// docs/websocket-protocol.md), each holding several tokens. Shown as they come, they would land in lumps. So a
// running answer's text is revealed at a steady pace instead: each frame's text over a little more than the
// time between frames (measured here, not assumed), so the reveal neither stalls between frames nor falls
// behind. The first text shows at once (time to first token), and so does everything that is not a live delta:
// a reload's snapshot, a final answer, and all text for readers who ask for reduced motion.

import { h, icon, iconButton, formatInt } from "./dom.js";
import { renderMarkdown } from "./markdown.js";

const RUNNING = new Set(["pending", "streaming"]);
const NEAR_BOTTOM_PX = 48;
// Say what is happening while an answer waits: no first token after this long, or a silence mid-answer.
const FIRST_TOKEN_NOTE_MS = 10_000;
const STALL_NOTE_MS = 8_000;
// The reveal (above): the time between frames is estimated from the frames that came (a moving average of
// the gaps); each frame's backlog is revealed over REVEAL_STRETCH times it. A frame more than `max` after
// the one before shows at once: the server's frames are at most 200 ms apart while tokens come faster, so a
// longer gap means the provider itself is slower than the frames (or paused), each frame holds a token or
// two, and pacing them would only delay them.
const FRAME_GAP_MS = { initial: 100, min: 16, max: 250 };
const REVEAL_STRETCH = 1.25;
const REDUCED_MOTION = window.matchMedia("(prefers-reduced-motion: reduce)");

export const isRunning = (message) => RUNNING.has(message.status);

function formatCost(cost) {
  const value = Number(cost);
  if (!Number.isFinite(value)) return null;
  if (value === 0) return "$0";
  return value < 0.01 ? `$${value.toPrecision(2)}` : `$${value.toFixed(4).replace(/0+$/, "").replace(/\.$/, "")}`;
}

function detailRows(message, modelName) {
  const rows = [];
  // The menu's name, and the exact id the answer was asked of (what a provider's dashboard and bill show).
  if (message.model) {
    rows.push(["Model", modelName && modelName !== message.model ? `${modelName} (${message.model})` : message.model]);
  }
  // Which provider answered: the model is served by several, tried in the admin's order.
  if (message.provider) rows.push(["Provider", message.provider]);
  const usage = message.usage;
  if (usage) {
    const parts = [];
    if (usage.prompt_tokens != null) parts.push(`${formatInt(usage.prompt_tokens)} in`);
    if (usage.completion_tokens != null) parts.push(`${formatInt(usage.completion_tokens)} out`);
    if (usage.cached_tokens) parts.push(`${formatInt(usage.cached_tokens)} cached`);
    rows.push(["Tokens", parts.join(" · ")]);
  }
  const cost = message.cost != null ? formatCost(message.cost) : null;
  if (message.own_key) rows.push(["Cost", cost ? `${cost} · Paid with your own key` : "Paid with your own key"]);
  else if (cost) rows.push(["Cost", cost]);
  if (message.ttft_ms != null) rows.push(["First token", `${formatInt(message.ttft_ms)} ms`]);
  if (message.tokens_per_second != null) rows.push(["Speed", `${Number(message.tokens_per_second).toFixed(1)} tokens/s`]);
  if (message.duration_ms != null) rows.push(["Duration", `${(message.duration_ms / 1000).toFixed(1)} s`]);
  // Sent to staff only: the technical side of a provider error (class, status, upstream detail).
  if (message.error_detail) rows.push(["Technical detail", message.error_detail]);
  if (!rows.length) rows.push(["Details", "Not available yet"]);
  return rows;
}

/** A user message's images: thumbnails that open the full image in a new tab. Null when there are none. */
function imageGallery(attachments) {
  if (!attachments?.length) return null;
  const count = attachments.length;
  return h("div", { class: `msg-images msg-images-${Math.min(count, 4)}` },
    ...attachments.map((image, index) => h("a", {
      class: "msg-image",
      href: image.url,
      target: "_blank",
      rel: "noopener",
      title: "Open the image full size",
    }, h("img", {
      src: image.url,
      alt: count > 1 ? `Attached image ${index + 1} of ${count}` : "Attached image",
      width: image.width,
      height: image.height,
      loading: "lazy",
      decoding: "async",
    }))));
}

class MessageView {
  constructor(thread, message) {
    this.thread = thread;
    this.id = message.id;
    this.role = message.role;
    this.renderedText = null;
    // The smooth reveal: code units of the text shown (fractional: advanced per animation frame), the pace in
    // code units per ms, when it last advanced, and the estimated time between frames.
    this.shown = 0;
    this.pace = 0;
    this.revealedAt = 0;
    this.frameGap = FRAME_GAP_MS.initial;
    this.lastDeltaAt = 0;
    this.editing = false;
    this.detailsOpen = false;
    this.el = h("article", { class: `msg msg-${message.role}`, dataset: { id: message.id } });
    this.el.append(h("h2", { class: "visually-hidden", text: message.role === "user" ? "You said:" : "Answer:" }));
    if (message.role === "user") {
      const images = imageGallery(message.attachments);
      if (images) this.el.append(images);
      this.bubble = h("div", { class: "user-bubble" });
      this.el.append(this.bubble);
    } else {
      this.body = h("div", { class: "markdown" });
      this.typing = h("div", { class: "typing", "aria-hidden": "true" }, h("span"), h("span"), h("span"));
      this.waitNote = h("p", { class: "wait-note", hidden: true });
      this.waitSince = performance.now(); // since when this view saw the answer wait (for its first or next text)
      this.el.append(this.typing, this.body, this.waitNote);
    }
    this.notes = h("div", { class: "msg-notes" });
    this.actions = h("div", { class: "msg-actions" });
    this.details = h("dl", { class: "msg-details", hidden: true });
    this.el.append(this.notes, this.actions, this.details);
    this.update(message);
  }

  get message() {
    return this.thread.app.messages.get(this.id);
  }

  /** Refresh everything but the streaming text (which renders on the next frame). */
  update(message = this.message) {
    const running = isRunning(message);
    this.el.classList.toggle("is-running", running);
    this.el.classList.toggle("is-error", message.status === "error");
    if (running) this.el.setAttribute("aria-busy", "true");
    else this.el.removeAttribute("aria-busy");
    if (this.role === "user") {
      if (!this.editing) this.renderUserText(message);
    } else {
      this.typing.hidden = !(running && !message.content);
      this.renderWaitNote(message);
      if (running) {
        this.thread.watchWaits();
        this.thread.scheduleRender(this);
      } else {
        // Final text: at once, together with its marks (Stopped, errors), never a frame apart.
        this.thread.dirty.delete(this);
        if (this.renderText() && this.thread.following) this.thread.scrollToBottom();
      }
    }
    this.renderNotes(message);
    this.renderActions(message);
    if (this.detailsOpen) this.renderDetails(message);
  }

  /** "Retrying (2 of 3)…", "Still waiting for OpenAI…" or "The provider paused…", or nothing. */
  waitText(message) {
    if (!isRunning(message)) return "";
    const waited = performance.now() - this.waitSince;
    if (!message.content) {
      if (waited >= FIRST_TOKEN_NOTE_MS) return `Still waiting for ${this.thread.app.providerOf(message)}…`;
      return message.retry ? `Retrying (${message.retry.attempt} of ${message.retry.attempts})…` : "";
    }
    return waited >= STALL_NOTE_MS ? "The provider paused…" : "";
  }

  renderWaitNote(message = this.message) {
    if (!this.waitNote || !message) return;
    const text = this.waitText(message);
    if (this.waitNote.textContent !== text) this.waitNote.textContent = text;
    this.waitNote.hidden = !text;
  }

  renderUserText(message) {
    // An image-only message shows its images and no bubble (an empty bubble would be a stray grey pill).
    const text = message.content.trim() ? message.content : "";
    this.bubble.hidden = !text;
    this.bubble.replaceChildren(...(text ? [h("div", { class: "user-text", text })] : []));
  }

  /** Called by the thread's frame loop. Returns true when the DOM changed. */
  renderText() {
    const message = this.message;
    if (!message || this.role !== "assistant") return false;
    const text = this.visibleText(message);
    if (text === this.renderedText) return false;
    renderMarkdown(this.body, text);
    this.renderedText = text;
    return true;
  }

  /** Live text arrived (a delta): pace its reveal over about the time until the next frame. */
  deltaArrived() {
    const now = performance.now();
    const gap = now - this.lastDeltaAt;
    const first = !this.lastDeltaAt;
    this.lastDeltaAt = now;
    const length = this.message.content.length;
    if (first || this.shown < 1 || gap > FRAME_GAP_MS.max) {
      this.shown = length; // the answer's first text, or a frame after a long gap: at once
      this.pace = 0;
      return;
    }
    this.frameGap = 0.7 * this.frameGap + 0.3 * Math.max(gap, FRAME_GAP_MS.min);
    this.advance(now);
    this.pace = (length - this.shown) / (REVEAL_STRETCH * this.frameGap);
  }

  advance(now) {
    if (this.revealedAt) this.shown += this.pace * (now - this.revealedAt);
    this.revealedAt = now;
  }

  /** The text to show now: the whole of it, or while it streams the part the reveal has reached. */
  visibleText(message) {
    const text = message.content;
    if (!isRunning(message) || REDUCED_MOTION.matches || this.renderedText === null) {
      this.shown = text.length;
      return text;
    }
    this.advance(performance.now());
    if (this.shown >= text.length) {
      this.shown = text.length;
      return text;
    }
    let end = Math.max(1, Math.floor(this.shown));
    const code = text.charCodeAt(end - 1);
    if (code >= 0xd800 && code <= 0xdbff) end += 1; // never half a surrogate pair
    return text.slice(0, end);
  }

  /** More text waits to be revealed. */
  get revealing() {
    return this.role === "assistant" && this.renderedText !== null && this.renderedText !== this.message?.content
      && isRunning(this.message);
  }

  renderNotes(message) {
    const notes = [];
    const retry = () => h("button", { type: "button", class: "btn btn-secondary btn-small", dataset: { action: "retry" }, text: "Retry" });
    if (message.status === "error") {
      notes.push(
        h("div", { class: "msg-alert" },
          icon("alert", "icon msg-alert-icon"),
          h("p", { text: message.error || "Something went wrong while answering." }),
          retry()),
      );
    } else if (message.status === "interrupted") {
      notes.push(
        h("div", { class: "msg-alert msg-alert-warn" },
          icon("alert", "icon msg-alert-icon"),
          h("p", { text: "This answer was interrupted before it finished. The text so far is kept." }),
          retry()),
      );
    } else if (message.status === "cancelled") {
      notes.push(h("span", { class: "badge", text: "Stopped" }));
    }
    if (message.status === "complete" && message.finish_reason === "length") {
      notes.push(h("p", { class: "msg-note", text: "The answer reached the maximum output length and may be cut off." }));
    }
    if (message.finish_reason === "content_filter") {
      notes.push(h("p", { class: "msg-note", text: "The provider's content filter stopped this answer." }));
    }
    if (message.context_trimmed) {
      notes.push(h("p", { class: "msg-note", text: "Older messages were left out to fit the model's context window." }));
    }
    this.notes.replaceChildren(...notes);
    this.notes.hidden = notes.length === 0;
  }

  branchNav(message) {
    const siblings = message.siblings || [message.id];
    if (siblings.length < 2) return null;
    const index = siblings.indexOf(message.id);
    const busy = this.thread.app.busy;
    const prev = iconButton("chevron-left", "Previous version", {
      class: "icon-btn icon-btn-small",
      disabled: index <= 0 || busy,
      dataset: { action: "select", target: siblings[index - 1] ?? "" },
    });
    const next = iconButton("chevron-right", "Next version", {
      class: "icon-btn icon-btn-small",
      disabled: index >= siblings.length - 1 || busy,
      dataset: { action: "select", target: siblings[index + 1] ?? "" },
    });
    return h("div", { class: "branch-nav", role: "group", "aria-label": "Versions" },
      prev, h("span", { class: "branch-count", text: `${index + 1}/${siblings.length}` }), next);
  }

  renderActions(message) {
    const busy = this.thread.app.busy;
    const items = [];
    if (this.role === "user") {
      if (this.editing) {
        this.actions.replaceChildren();
        return;
      }
      items.push(iconButton("edit", "Edit", { dataset: { action: "edit" }, disabled: busy }));
      if (message.content.trim()) items.push(iconButton("copy", "Copy", { dataset: { action: "copy" } }));
      const nav = this.branchNav(message);
      if (nav) items.unshift(nav);
    } else {
      if (isRunning(message)) {
        this.actions.replaceChildren();
        this.actions.hidden = true;
        return;
      }
      const nav = this.branchNav(message);
      if (nav) items.push(nav);
      items.push(iconButton("copy", "Copy", { dataset: { action: "copy" } }));
      items.push(iconButton("regenerate", "Regenerate", { dataset: { action: "regenerate" }, disabled: busy }));
      items.push(iconButton("info", "Details", { dataset: { action: "details" }, "aria-expanded": String(this.detailsOpen) }));
    }
    this.actions.hidden = false;
    // Rebuilt when the busy state changes: keep the keyboard focus on the same control.
    const focused = this.actions.contains(document.activeElement) ? document.activeElement.getAttribute("aria-label") : null;
    this.actions.replaceChildren(...items);
    if (focused) {
      const again = [...this.actions.querySelectorAll("button")].find((b) => b.getAttribute("aria-label") === focused);
      (again && !again.disabled ? again : this.el.querySelector(".msg-actions button:not(:disabled)"))?.focus();
    }
  }

  renderDetails(message) {
    this.details.replaceChildren(
      ...detailRows(message, this.thread.app.modelNameOf(message)).map(([term, value]) =>
        h("div", {}, h("dt", { text: term }), h("dd", { text: value }))),
    );
  }

  toggleDetails() {
    this.detailsOpen = !this.detailsOpen;
    this.details.hidden = !this.detailsOpen;
    if (this.detailsOpen) this.renderDetails(this.message);
    this.actions.querySelector('[data-action="details"]')?.setAttribute("aria-expanded", String(this.detailsOpen));
  }

  startEdit() {
    const message = this.message;
    this.editing = true;
    const area = h("textarea", { class: "edit-input", "aria-label": "Edit message", rows: 3 });
    area.value = message.content;
    const form = h("form", { class: "edit-box" },
      area,
      h("div", { class: "edit-actions" },
        h("button", { type: "button", class: "btn btn-secondary btn-small", dataset: { action: "cancel-edit" }, text: "Cancel" }),
        h("button", { type: "submit", class: "btn btn-primary btn-small", text: "Save and send" })));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      // The edited copy keeps the images, so a message with images may lose all its words.
      const text = area.value.trim() ? area.value : "";
      if (!text && !message.attachments?.length) return;
      if (this.thread.app.editMessage(this.id, text)) this.stopEdit();
    });
    area.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        event.preventDefault();
        event.stopPropagation();
        this.stopEdit();
      } else if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        form.requestSubmit();
      }
    });
    const grow = () => {
      area.style.height = "auto";
      area.style.height = `${Math.min(area.scrollHeight + 2, window.innerHeight * 0.5)}px`;
    };
    area.addEventListener("input", grow);
    this.bubble.replaceChildren(form);
    this.bubble.hidden = false;
    this.el.classList.add("is-editing");
    this.renderActions(message);
    grow();
    area.focus();
    area.setSelectionRange(area.value.length, area.value.length);
  }

  stopEdit() {
    this.editing = false;
    this.el.classList.remove("is-editing");
    this.update();
    this.actions.querySelector('[data-action="edit"]')?.focus();
  }
}

export class Thread {
  constructor(app, { scroller, list, empty, jump }) {
    this.app = app;
    this.scroller = scroller;
    this.list = list;
    this.empty = empty;
    this.jump = jump;
    this.views = new Map();
    this.dirty = new Set();
    this.frame = null;
    this.following = true;
    this.autoScrolling = false; // a smooth scroll of ours is under way: its scroll events aren't the reader's
    this.nextRenderAt = 0;
    this.waitTimer = null;
    scroller.addEventListener("scroll", () => this.onScroll(), { passive: true });
    for (const type of ["wheel", "touchstart", "keydown"]) {
      scroller.addEventListener(type, () => {
        this.autoScrolling = false;
      }, { passive: true });
    }
    jump.addEventListener("click", () => this.scrollToBottom(true));
    list.addEventListener("click", (event) => this.onClick(event));
    new ResizeObserver(() => {
      if (this.following) this.scrollToBottom();
    }).observe(this.list);
  }

  atBottom() {
    const s = this.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight <= NEAR_BOTTOM_PX;
  }

  onScroll() {
    if (this.autoScrolling) {
      if (this.atBottom()) this.autoScrolling = false;
      return;
    }
    this.following = this.atBottom();
    this.jump.hidden = this.following;
  }

  scrollToBottom(smooth = false) {
    this.following = true;
    this.jump.hidden = true;
    const animate = smooth && !window.matchMedia("(prefers-reduced-motion: reduce)").matches;
    this.autoScrolling = animate;
    this.scroller.scrollTo({ top: this.scroller.scrollHeight, behavior: animate ? "smooth" : "instant" });
  }

  /** Show these messages (the active branch, root first), reusing the views of those already shown. */
  setPath(ids) {
    const keep = new Set(ids);
    for (const [id, view] of this.views) {
      if (!keep.has(id)) {
        view.el.remove();
        this.views.delete(id);
        this.dirty.delete(view);
      }
    }
    let cursor = null;
    for (const id of ids) {
      let view = this.views.get(id);
      const message = this.app.messages.get(id);
      if (!view) {
        view = new MessageView(this, message);
        this.views.set(id, view);
      } else {
        view.update(message);
      }
      const expected = cursor ? cursor.nextSibling : this.list.firstChild;
      if (expected !== view.el) this.list.insertBefore(view.el, expected);
      cursor = view.el;
    }
    this.empty.hidden = ids.length > 0;
    this.list.hidden = ids.length === 0;
    this.flush();
  }

  update(id) {
    const view = this.views.get(id);
    if (view) view.update();
  }

  /** Re-render actions everywhere (busy state changed). */
  refreshActions() {
    for (const view of this.views.values()) view.renderActions(view.message);
  }

  /** Re-check the running answers' wait notes every second while any answer runs. */
  watchWaits() {
    if (this.waitTimer) return;
    this.waitTimer = setInterval(() => {
      let running = false;
      for (const view of this.views.values()) {
        const message = view.message;
        if (view.role !== "assistant" || !message) continue;
        running ||= isRunning(message);
        view.renderWaitNote(message);
      }
      if (!running) {
        clearInterval(this.waitTimer);
        this.waitTimer = null;
      }
    }, 1000);
  }

  textChanged(id) {
    const view = this.views.get(id);
    if (view) {
      view.deltaArrived();
      view.waitSince = performance.now();
      if (view.message.retry) view.message.retry = null;
      view.renderWaitNote();
      view.typing.hidden = Boolean(view.message.content) || !isRunning(view.message);
      this.scheduleRender(view);
    }
  }

  scheduleRender(view) {
    this.dirty.add(view);
    if (this.frame !== null) return;
    const wait = Math.max(0, this.nextRenderAt - performance.now());
    const run = () => {
      this.frame = null;
      this.flush();
    };
    this.frame = wait > 0 ? setTimeout(() => requestAnimationFrame(run), wait) : requestAnimationFrame(run);
  }

  /** Render every dirty answer now; keep the bottom in view if the reader was there. */
  flush() {
    if (!this.dirty.size) return;
    const follow = this.following;
    const started = performance.now();
    const revealing = [];
    for (const view of this.dirty) {
      view.renderText();
      if (view.revealing) revealing.push(view);
    }
    this.dirty.clear();
    const cost = performance.now() - started;
    // Long answers cost more to re-parse: render them less often rather than drop frames.
    this.nextRenderAt = performance.now() + (cost > 8 ? Math.min(cost * 4, 400) : 0);
    if (follow) this.scrollToBottom();
    else this.jump.hidden = this.atBottom();
    for (const view of revealing) this.scheduleRender(view); // the reveal goes on at the next frame
  }

  async onClick(event) {
    const button = event.target.closest("button");
    if (!button || !this.list.contains(button)) return;
    const article = button.closest("article.msg");
    const view = article && this.views.get(article.dataset.id);
    if (button.classList.contains("code-copy")) {
      const code = button.closest(".code-block")?.querySelector("code");
      if (code) await copyText(code.textContent, button, "Copied!");
      return;
    }
    if (!view) return;
    switch (button.dataset.action) {
      case "copy":
        await copyText(view.message.content, button);
        break;
      case "regenerate":
      case "retry":
        this.app.regenerate(view.id);
        break;
      case "edit":
        view.startEdit();
        break;
      case "cancel-edit":
        view.stopEdit();
        break;
      case "details":
        view.toggleDetails();
        break;
      case "select":
        if (button.dataset.target) this.app.selectBranch(button.dataset.target);
        break;
      default:
    }
  }
}

/** Copy to the clipboard and say so on the button for a moment. */
async function copyText(text, button, done = "Copied") {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    return;
  }
  const label = button.getAttribute("aria-label");
  if (label) {
    button.setAttribute("aria-label", done);
    button.replaceChildren(icon("check"));
    setTimeout(() => {
      button.setAttribute("aria-label", label);
      button.replaceChildren(icon("copy"));
    }, 1500);
  } else {
    const text = button.textContent;
    button.textContent = done;
    setTimeout(() => {
      button.textContent = text;
    }, 1500);
  }
}
