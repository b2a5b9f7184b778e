// The chat page. Holds the open conversation's messages and speaks the websocket protocol
// (docs/websocket-protocol.md); the sidebar, thread and composer modules draw it.
//
// Exactly-once text: for every message we keep its text and its length in code points. A delta at our length
// is appended; the part of a delta before our length is dropped; a delta past our length is a gap: we ignore
// it and send `sync` with our length. `end` replaces the text with the final content.

import { Connection } from "./connection.js";
import { Composer } from "./composer.js";
import { codePoints, isMac, isTyping, sliceCodePoints, toast } from "./dom.js";
import { OlderMessages } from "./older_messages.js";
import { Sidebar, displayTitle } from "./sidebar.js";
import { Thread, isRunning } from "./thread.js";

const boot = JSON.parse(document.getElementById("chat-boot").textContent);
const MOBILE = window.matchMedia("(max-width: 767px)");

const CONNECTION_TEXT = {
  connecting: "Connecting…",
  open: "Connected",
  reconnecting: "Reconnecting…",
  offline: "Offline",
};

class ChatApp {
  constructor() {
    this.boot = boot;
    this.conversationId = boot.conversation;
    this.conversation = null;
    this.messages = new Map(); // id -> message object (+ `cp`: its length in code points)
    this.path = []; // ids on the active branch, root first
    this.refCounter = 0;
    this.pendingSend = null; // {ref, text, attachments} until its ack or error
    this.unacked = null; // a send whose socket dropped before the ack: {text, attachments, conversation}
    this.sendOnOpen = null; // {conversation}: the user pressed Send while the socket was down
    this.settingsFor = undefined; // the conversation whose model and settings the composer shows
    this.loading = Boolean(this.conversationId);

    this.appEl = document.querySelector(".chat-app");
    this.titleEl = document.getElementById("chat-title");
    this.connEl = document.querySelector(".conn");
    this.composer = new Composer(this, document.getElementById("composer"));
    this.thread = new Thread(this, {
      scroller: document.getElementById("thread"),
      list: document.querySelector(".messages"),
      empty: document.querySelector(".empty-state"),
      jump: document.querySelector(".jump-latest"),
    });
    this.sidebar = new Sidebar(this, document.getElementById("sidebar"));
    this.olderMessages = new OlderMessages(this); // older turns on scroll up, search results opened at their message
    this.connection = new Connection(this.socketUrl(), {
      onOpen: () => this.onConnected(),
      onFrame: (frame) => this.onFrame(frame),
      onState: (state) => this.showConnection(state),
      onUnauthenticated: () => this.goToLogin(),
      checkAuth: () => this.checkAuth(),
    });

    this.bindChrome();
    this.thread.setPath([]);
    this.thread.list.hidden = true;
    this.thread.empty.hidden = this.loading;
    this.sidebar.reset();
    this.connection.start();
    this.focusComposer();
  }

  /** Focus the message box, except on phones, where that would pop the keyboard over the page. */
  focusComposer() {
    if (!MOBILE.matches) this.composer.focus();
  }

  socketUrl() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${location.host}${boot.urls.socket}`;
  }

  get busy() {
    return this.path.some((id) => isRunning(this.messages.get(id)));
  }

  nextRef() {
    this.refCounter += 1;
    return `c${this.refCounter}`;
  }

  // --- connection ------------------------------------------------------------------------------------

  showConnection(state) {
    this.connEl.dataset.state = state;
    this.connEl.querySelector(".conn-text").textContent = CONNECTION_TEXT[state] || state;
  }

  onConnected() {
    // After a reconnect: the snapshot of the open conversation, plus the server's sync, makes it exact.
    if (this.pendingSend) {
      // The socket dropped before the send was acknowledged: did it arrive? The snapshot will tell (for a
      // new chat there is none to ask, so the words go back into the box rather than risk sending twice).
      const { text, attachments } = this.pendingSend;
      this.unacked = { text, attachments, conversation: this.conversationId };
      this.pendingSend = null;
      if (!this.conversationId) this.restoreUnacked();
    }
    if (this.conversationId) this.connection.send({ type: "open", conversation: this.conversationId, ref: "open" });
    const queued = this.sendOnOpen;
    this.sendOnOpen = null;
    if (queued && queued.conversation === this.conversationId && !this.pendingSend && !this.unacked) {
      this.composer.showError("");
      this.composer.submit();
    }
  }

  restoreUnacked() {
    if (this.unacked && !this.composer.input.value.trim()) this.composer.setText(this.unacked.text);
    if (this.unacked) this.composer.attachments.restore(this.unacked.attachments);
    this.unacked = null;
  }

  async checkAuth() {
    try {
      // The archived list: small, and its 401 says "logged out" where a refused socket can't.
      const response = await fetch(`${boot.urls.conversations}?archived=1`, { credentials: "same-origin" });
      return response.status !== 401;
    } catch {
      return true; // the network is down: keep retrying
    }
  }

  goToLogin() {
    const next = encodeURIComponent(location.pathname);
    location.assign(`${boot.urls.login}?next=${next}`);
  }

  // --- frames ----------------------------------------------------------------------------------------

  onFrame(frame) {
    switch (frame.type) {
      case "conversation":
        return this.onSnapshot(frame);
      case "ack":
        return this.onTurn(frame, true);
      case "turn":
        return this.onTurn(frame, false);
      case "status":
        return this.onStatus(frame);
      case "retrying":
        return this.onRetrying(frame);
      case "delta":
        return this.onDelta(frame);
      case "end":
        return this.onEnd(frame);
      case "title":
        return this.onTitle(frame);
      case "error":
        return this.onError(frame);
      default:
    }
  }

  remember(message) {
    const held = this.messages.get(message.id);
    const next = { ...message, cp: codePoints(message.content) };
    if (!message.siblings && held?.siblings) next.siblings = held.siblings;
    // A snapshot lags the live text by up to a checkpoint; keep the longer text we already show (the server
    // resends from the snapshot's length and we drop what we have).
    if (held && isRunning(next) && held.content.length > next.content.length && held.content.startsWith(next.content)) {
      next.content = held.content;
      next.cp = held.cp;
    }
    this.messages.set(message.id, next);
    return next;
  }

  onSnapshot(frame) {
    const conversation = frame.conversation;
    if (conversation.id !== this.conversationId && frame.ref !== "select") return;
    this.loading = false;
    this.conversationId = conversation.id;
    this.conversation = conversation;
    for (const message of frame.messages) this.remember(message);
    this.path = frame.messages.map((m) => m.id);
    this.setTitle(conversation.title);
    if (this.settingsFor !== conversation.id) {
      // First sight of this conversation (not a reconnect): show its model and settings.
      this.settingsFor = conversation.id;
      this.composer.selectModel(conversation.model);
      this.composer.loadSettings(conversation);
    }
    if (this.unacked) {
      const users = frame.messages.filter((m) => m.role === "user");
      const last = users[users.length - 1];
      // An image-only send has no words to recognise it by: its number of images must match too.
      const arrived = last && last.content === this.unacked.text
        && (last.attachments?.length ?? 0) === this.unacked.attachments.length;
      if (arrived) {
        this.composer.attachments.sent(this.unacked.attachments);
        this.unacked = null;
      } else this.restoreUnacked();
    }
    const first = frame.ref === "open" && !this.thread.views.size;
    this.thread.setPath(this.path);
    if (first) this.thread.scrollToBottom();
    this.updateRunning();
    this.olderMessages.afterSnapshot(frame);
  }

  onTurn(frame, own) {
    if (own && frame.command === "stop") return;
    const conversation = frame.conversation;
    if (!own && conversation.id !== this.conversationId) return;
    if (!own && this.messages.has(frame.assistant_message.id)) return; // our own turn, echoed to the group
    if (own && this.pendingSend?.ref === frame.ref) {
      this.composer.attachments.sent(this.pendingSend.attachments);
      this.pendingSend = null;
      if (this.composer.settingsDirty) this.composer.settingsSent();
    }
    const anchor = (frame.user_message || frame.assistant_message).parent;
    if (!own && anchor !== null && !this.path.includes(anchor)) {
      // Another tab branched off a message this tab doesn't show: take the server's view of the branch.
      this.connection.send({ type: "open", conversation: conversation.id, ref: "open" });
      return;
    }
    const switching = conversation.id !== this.conversationId;
    this.conversationId = conversation.id;
    this.conversation = conversation;
    this.settingsFor = conversation.id;
    if (frame.created || switching) {
      history.pushState({ conversation: conversation.id }, "", `/c/${conversation.id}`);
      this.setTitle(conversation.title);
    }
    this.sidebar.touch(conversation);
    this.sidebar.setCurrent(conversation.id);

    const user = frame.user_message;
    const answer = frame.assistant_message;
    if (user) {
      this.remember(user);
      this.updateSiblings(user);
    }
    this.remember(answer);
    this.updateSiblings(answer);
    // The new messages hang off their parent: cut the path there and continue with them.
    const cut = anchor === null ? 0 : this.path.indexOf(anchor) + 1;
    this.path = [...this.path.slice(0, cut), ...(user ? [user.id] : []), answer.id];
    if (own) this.thread.scrollToBottom();
    this.thread.setPath(this.path);
    if (own) this.thread.scrollToBottom();
    this.updateRunning();
  }

  /** A new sibling: every message of that family now knows the longer list. */
  updateSiblings(message) {
    for (const id of message.siblings || []) {
      const other = this.messages.get(id);
      if (other) other.siblings = message.siblings;
    }
  }

  onStatus(frame) {
    const message = this.messages.get(frame.message);
    if (!message) return;
    message.status = frame.status;
    message.provider = frame.provider;
    message.model = frame.model || message.model;
    this.thread.update(message.id);
  }

  onRetrying(frame) {
    const message = this.messages.get(frame.message);
    if (!message || message.content) return;
    message.retry = { attempt: frame.attempt, attempts: frame.attempts };
    message.provider = frame.provider;
    this.thread.update(message.id);
  }

  /** The menu's name for the model an answer came from; null when the menu no longer offers it. */
  modelNameOf(message) {
    return boot.models.find((m) => m.id === message.model)?.name ?? null;
  }

  /** The provider an answer waits for, as far as this page knows: named by the server, else by its model. */
  providerOf(message) {
    if (message.provider) return message.provider;
    // The menu's models (services/model_menu.py): a canonical id, its name, its providers in route order.
    const model = boot.models.find((m) => m.id === message.model || m.name === message.model);
    return model?.providers?.[0] || "the provider";
  }

  onDelta(frame) {
    const message = this.messages.get(frame.message);
    if (!message) return;
    let text = frame.text;
    if (frame.offset > message.cp) {
      // A gap: ask for what we lack, once per length we hold (the reply covers the frames dropped meanwhile).
      if (message.syncedAt !== message.cp) {
        message.syncedAt = message.cp;
        this.connection.send({ type: "sync", message: message.id, offset: message.cp });
      }
      return;
    }
    if (frame.offset < message.cp) {
      text = sliceCodePoints(text, message.cp - frame.offset);
      if (!text) return;
    }
    const wasEmpty = !message.content;
    message.content += text;
    message.cp += codePoints(text);
    if (message.status === "pending") message.status = "streaming";
    if (wasEmpty) this.thread.update(message.id);
    this.thread.textChanged(message.id);
  }

  onEnd(frame) {
    const final = frame.message;
    if (!this.messages.has(final.id)) return;
    this.remember(final);
    this.thread.update(final.id);
    this.updateRunning();
  }

  onTitle(frame) {
    this.sidebar.setTitle(frame.conversation, frame.title);
    if (frame.conversation === this.conversationId) {
      if (this.conversation) this.conversation.title = frame.title;
      this.setTitle(frame.title);
    }
  }

  onError(frame) {
    if (this.pendingSend && frame.ref === this.pendingSend.ref) {
      // Nothing was saved: give the words back.
      if (!this.composer.input.value.trim()) this.composer.setText(this.pendingSend.text);
      this.composer.attachments.restore(this.pendingSend.attachments);
      this.pendingSend = null;
      this.composer.showError(frame.message);
      return;
    }
    if (frame.ref === "open" && frame.code === "not_found") {
      toast("That chat doesn't exist any more.", "error");
      this.newChat();
      return;
    }
    toast(frame.message || "Something went wrong.", "error");
  }

  updateRunning() {
    const busy = this.busy;
    this.composer.setRunning(busy);
    this.thread.refreshActions();
  }

  // --- commands --------------------------------------------------------------------------------------

  send(text) {
    if (!this.connection.isOpen) {
      // Typed before the socket was up (a fresh page, a reconnect): the words stay in the box and go out by
      // themselves once the server says hello, unless the user changes chats or empties the box meanwhile.
      this.sendOnOpen = { conversation: this.conversationId };
      this.composer.showError("Connecting… your message stays here and is sent as soon as the connection is up.", "waiting");
      return false;
    }
    this.sendOnOpen = null;
    const ref = this.nextRef();
    const frame = {
      type: "send",
      ref,
      text,
      conversation: this.conversationId,
      model: this.composer.model?.id ?? null,
      ...this.composer.takeSettings(),
    };
    const attachments = this.composer.attachments.take();
    if (attachments.length) frame.attachments = attachments.map((item) => item.id);
    if (!this.connection.send(frame)) {
      this.composer.attachments.restore(attachments);
      return false;
    }
    this.pendingSend = { ref, text, attachments };
    this.composer.rememberModel();
    return true;
  }

  regenerate(messageId) {
    if (!this.connection.send({ type: "regenerate", message: messageId, model: this.composer.model?.id ?? null, ref: this.nextRef() })) {
      toast("Not connected. Try again in a moment.", "error");
    }
  }

  editMessage(messageId, text) {
    const sent = this.connection.send({
      type: "edit", message: messageId, text, model: this.composer.model?.id ?? null, ref: "edit",
    });
    if (!sent) toast("Not connected. Try again in a moment.", "error");
    return sent;
  }

  selectBranch(messageId) {
    this.connection.send({ type: "select", message: messageId, ref: "select" });
  }

  stop() {
    for (const id of this.path) {
      if (isRunning(this.messages.get(id))) this.connection.send({ type: "stop", message: id, ref: this.nextRef() });
    }
  }

  // --- navigation ------------------------------------------------------------------------------------

  setTitle(title) {
    const shown = this.conversationId ? displayTitle(title) : "New chat";
    this.titleEl.textContent = shown;
    document.title = this.conversationId && title ? `${title} · ${boot.site_name}` : boot.site_name;
  }

  clearConversation() {
    this.messages.clear();
    this.path = [];
    this.conversation = null;
    this.pendingSend = null;
    this.sendOnOpen = null;
    this.thread.setPath([]);
  }

  openConversation(id, { push }) {
    if (MOBILE.matches) this.setSidebar(false);
    if (id === this.conversationId && !this.loading) {
      this.focusComposer();
      return;
    }
    if (push) history.pushState({ conversation: id }, "", `/c/${id}`);
    this.clearConversation();
    this.conversationId = id;
    this.loading = true;
    this.thread.empty.hidden = true;
    this.sidebar.setCurrent(id);
    const item = this.sidebar.find(id);
    this.setTitle(item?.title || "");
    this.connection.send({ type: "open", conversation: id, ref: "open" });
    this.focusComposer();
  }

  newChat({ push = true } = {}) {
    if (MOBILE.matches) this.setSidebar(false);
    if (push && location.pathname !== boot.urls.home) history.pushState({ conversation: null }, "", boot.urls.home);
    this.clearConversation();
    this.conversationId = null;
    this.loading = false;
    this.settingsFor = null;
    this.composer.selectModel(null);
    this.composer.loadSettings(null);
    this.setTitle("");
    this.sidebar.setCurrent(null);
    this.updateRunning();
    this.focusComposer();
  }

  onPopState() {
    const match = /^\/c\/([0-9a-f-]{36})$/.exec(location.pathname);
    if (match) this.openConversation(match[1], { push: false });
    else this.newChat({ push: false });
  }

  // --- sidebar, shortcuts and the rest of the chrome ---------------------------------------------------

  get sidebarOpen() {
    const state = this.appEl.dataset.sidebar;
    return state === "open" || (state === "auto" && !MOBILE.matches);
  }

  setSidebar(open) {
    this.appEl.dataset.sidebar = open ? "open" : "closed";
    document.querySelector(".sidebar-backdrop").hidden = !(open && MOBILE.matches);
    if (!MOBILE.matches) {
      // A cookie, like the theme's, so the server renders the sidebar as it was: no flash on load.
      const secure = location.protocol === "https:" ? "; Secure" : "";
      document.cookie = `chat_sidebar=${open ? "open" : "closed"}; Path=/; Max-Age=31536000; SameSite=Lax${secure}`;
    }
    if (open) document.querySelector(".sidebar .sidebar-new")?.focus();
  }

  toggleSidebar() {
    this.setSidebar(!this.sidebarOpen);
  }

  bindChrome() {
    MOBILE.addEventListener("change", () => {
      if (MOBILE.matches && this.appEl.dataset.sidebar === "open") this.appEl.dataset.sidebar = "auto";
      document.querySelector(".sidebar-backdrop").hidden = true;
    });
    if (isMac()) for (const kbd of document.querySelectorAll("kbd[data-mod]")) kbd.textContent = "⌘";
    if (isMac()) for (const kbd of document.querySelectorAll(".sidebar-kbd")) kbd.textContent = "⌘ Shift O";

    document.addEventListener("click", (event) => {
      const target = event.target.closest("[data-action]");
      if (!target) return;
      switch (target.dataset.action) {
        case "new-chat":
          event.preventDefault();
          this.newChat();
          break;
        case "open-sidebar":
          this.setSidebar(true);
          break;
        case "close-sidebar":
          this.setSidebar(false);
          if (!MOBILE.matches) document.querySelector('[data-action="open-sidebar"]')?.focus();
          break;
        case "shortcuts":
          this.showShortcuts();
          break;
        default:
      }
    });
    window.addEventListener("popstate", () => this.onPopState());
    document.addEventListener("keydown", (event) => this.onKey(event));
  }

  showShortcuts() {
    const dialog = document.getElementById("shortcuts-dialog");
    if (!dialog.open) dialog.showModal();
  }

  onKey(event) {
    const mod = event.ctrlKey || event.metaKey;
    const key = event.key.toLowerCase();
    if (document.querySelector("dialog[open]")) return; // dialogs handle their own keys
    if (mod && event.shiftKey && key === "o") {
      event.preventDefault();
      this.newChat();
    } else if (mod && event.shiftKey && key === "s") {
      event.preventDefault();
      this.toggleSidebar();
    } else if (mod && (key === "/" || event.code === "Slash")) {
      event.preventDefault();
      this.showShortcuts();
    } else if (event.key === "Escape" && event.shiftKey) {
      event.preventDefault();
      this.composer.focus();
    } else if (event.key === "Escape" && this.busy && !event.defaultPrevented) {
      event.preventDefault();
      this.stop();
    } else if (event.key === "Escape" && MOBILE.matches && this.sidebarOpen) {
      this.setSidebar(false);
    } else if (!isTyping(event.target) && !mod && !event.altKey) {
      if (event.key === "?") {
        event.preventDefault();
        this.showShortcuts();
      } else if (event.key === "/") {
        event.preventDefault();
        this.composer.focus();
      }
    }
  }
}

window.chatApp = new ChatApp();
