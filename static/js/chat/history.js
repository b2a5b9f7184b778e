// Conversation history on the chat page: older turns loaded as the reader scrolls up (a long conversation
// opens with its newest messages), opening a search result at its message (the branch through it is selected
// over the websocket, then the message is scrolled to and flashed), the share dialog and the Undo toast.

import { h } from "./dom.js";

const TOP_PX = 400; // start loading older turns this close to the top
const PAGE = 100;

/** A fragment from server-built snippet HTML (escaped text and <mark> only). Anything else: plain text. */
export function markedFragment(html, fallback) {
  const template = document.createElement("template");
  template.innerHTML = html || "";
  const safe = [...template.content.querySelectorAll("*")].every((el) => el.tagName === "MARK" && !el.attributes.length);
  if (!safe || !template.content.textContent) {
    const text = safe ? fallback : template.content.textContent;
    return document.createTextNode(text || fallback);
  }
  return template.content;
}

/** A toast with an Undo button; `undo` runs at most once. */
export function undoToast(text, undo, ms = 10000) {
  const box = document.querySelector(".live-toasts");
  if (!box) return;
  let timer = null;
  const button = h("button", { type: "button", class: "live-toast-action", text: "Undo" });
  const item = h("div", { class: "live-toast live-toast-undo" }, h("span", { text }), button);
  button.addEventListener("click", async () => {
    clearTimeout(timer);
    button.disabled = true;
    item.remove();
    try {
      await undo();
    } catch (error) {
      const failed = h("p", { class: "live-toast live-toast-error", text: error.message });
      box.append(failed);
      setTimeout(() => failed.remove(), 5000);
    }
  });
  box.append(item);
  timer = setTimeout(() => item.remove(), ms);
}

export class History {
  constructor(app) {
    this.app = app;
    this.hasOlder = false;
    this.loadingOlder = false;
    this.focusTarget = null;
    this.app.thread.scroller.addEventListener("scroll", () => {
      if (this.app.thread.scroller.scrollTop < TOP_PX) this.loadOlder();
    }, { passive: true });
  }

  /** Called by the app after every conversation snapshot. */
  afterSnapshot(frame) {
    this.hasOlder = Boolean(frame.has_more);
    this.app.thread.list.dataset.older = this.hasOlder ? "more" : "all";
    if (this.focusTarget && frame.ref === "select") this.reveal();
  }

  async loadOlder() {
    const app = this.app;
    if (!this.hasOlder || this.loadingOlder || !app.conversationId || !app.path.length) return false;
    this.loadingOlder = true;
    const conversation = app.conversationId;
    const params = new URLSearchParams({ before: app.path[0], limit: String(PAGE) });
    try {
      const response = await fetch(`${app.boot.urls.conversations}/${conversation}/messages?${params}`, {
        credentials: "same-origin", headers: { Accept: "application/json" },
      });
      if (!response.ok || conversation !== app.conversationId) return false;
      const page = await response.json();
      const scroller = app.thread.scroller;
      const fromBottom = scroller.scrollHeight - scroller.scrollTop;
      for (const message of page.messages) app.remember(message);
      app.path = [...page.messages.map((m) => m.id), ...app.path];
      this.hasOlder = page.has_more;
      app.thread.list.dataset.older = this.hasOlder ? "more" : "all";
      app.thread.setPath(app.path);
      scroller.scrollTop = scroller.scrollHeight - fromBottom; // keep the reader's place
      return true;
    } finally {
      this.loadingOlder = false;
    }
  }

  /** Open a conversation with the branch through `messageId` selected, and show that message. */
  openAt(conversationId, messageId) {
    this.focusTarget = messageId;
    this.app.openConversation(conversationId, { push: true });
    this.app.selectBranch(messageId);
  }

  async reveal() {
    const id = this.focusTarget;
    while (!this.app.path.includes(id) && this.hasOlder) {
      if (!(await this.loadOlder())) break;
    }
    this.focusTarget = null;
    if (!this.app.path.includes(id)) return;
    const article = this.app.thread.list.querySelector(`article.msg[data-id="${CSS.escape(id)}"]`);
    if (!article) return;
    this.app.thread.following = false;
    article.scrollIntoView({ block: "center", behavior: "instant" });
    article.classList.remove("msg-flash");
    void article.offsetWidth; // restart the animation
    article.classList.add("msg-flash");
    setTimeout(() => article.classList.remove("msg-flash"), 2200);
  }
}

export class ShareDialog {
  constructor(sidebar, dialog) {
    this.sidebar = sidebar;
    this.dialog = dialog;
    this.item = null;
    this.row = dialog.querySelector(".share-link-row");
    this.url = dialog.querySelector(".share-url");
    this.create = dialog.querySelector(".share-create");
    this.revoke = dialog.querySelector(".share-revoke");
    dialog.addEventListener("click", (event) => {
      const button = event.target.closest("[data-share-action]");
      if (button) this.act(button.dataset.shareAction, button);
    });
  }

  endpoint() {
    return `${this.sidebar.app.boot.urls.conversations}/${this.item.id}/share`;
  }

  show(share) {
    const linked = Boolean(share);
    this.row.hidden = !linked;
    this.revoke.hidden = !linked;
    this.create.textContent = linked ? "Update link" : "Create link";
    this.url.value = linked ? new URL(share.url, location.origin).href : "";
  }

  async open(item) {
    this.item = item;
    this.dialog.querySelector(".share-name").textContent = item.title || "New chat";
    this.show(null);
    this.dialog.showModal();
    try {
      this.show((await this.sidebar.api(this.endpoint())).share);
    } catch (error) {
      this.dialog.close();
    }
  }

  async act(action, button) {
    if (action === "copy") {
      try {
        await navigator.clipboard.writeText(this.url.value);
        button.textContent = "Copied!";
        setTimeout(() => (button.textContent = "Copy link"), 1500);
      } catch {
        this.url.select();
      }
      return;
    }
    button.disabled = true;
    try {
      const body = await this.sidebar.api(this.endpoint(), { method: action === "create" ? "POST" : "DELETE" });
      this.show(body.share);
      if (body.share) {
        this.url.focus();
        this.url.select();
      } else {
        this.create.focus();
      }
    } catch (error) {
      this.dialog.querySelector(".share-intro").textContent = error.message;
    } finally {
      button.disabled = false;
    }
  }
}
