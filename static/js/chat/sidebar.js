// The sidebar: the user's conversations from /api/conversations (keyset pages, more loaded on scroll),
// grouped Pinned / Today / Yesterday / Previous 7 days / Older, with search (titles and message text, from
// /api/search, with highlighted snippets that open the chat at the message) and a menu per conversation
// (rename, pin, archive, share, download, delete with Undo). Titles change live from `title` frames.

import { h, icon, debounce, markedFragment, toast, undoToast } from "./dom.js";
import { ShareDialog } from "./share_dialog.js";

const DAY_MS = 86400000;

function startOfDay(date) {
  const d = new Date(date);
  d.setHours(0, 0, 0, 0);
  return d.getTime();
}

function groupOf(item, today) {
  if (item.pinned) return "Pinned";
  const day = startOfDay(item.updated_at);
  if (day >= today) return "Today";
  if (day >= today - DAY_MS) return "Yesterday";
  if (day >= today - 7 * DAY_MS) return "Previous 7 days";
  return "Older";
}

export const displayTitle = (title) => title || "New chat";

export class Sidebar {
  constructor(app, root) {
    this.app = app;
    this.root = root;
    this.list = root.querySelector(".conv-list");
    this.scroller = root.querySelector(".conv-scroll");
    this.emptyNote = root.querySelector(".conv-empty");
    this.modeNote = root.querySelector(".conv-mode");
    this.sentinel = root.querySelector(".conv-sentinel");
    this.search = root.querySelector("#chat-search");
    this.archivedButton = root.querySelector('[data-action="toggle-archived"]');
    this.menu = document.querySelector(".conv-menu");
    this.deleteDialog = document.getElementById("delete-dialog");
    this.shareDialog = new ShareDialog(this, document.getElementById("share-dialog"));
    this.results = null; // search results while there is a query
    this.items = [];
    this.next = null;
    this.loading = false;
    this.generation = 0; // bumps on every reset, so a late page of an old query is dropped
    this.query = "";
    this.archived = false;
    this.menuFor = null;
    this.renaming = null;

    this.search.addEventListener("input", debounce(() => this.reset(), 250));
    this.search.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && this.search.value) {
        event.stopPropagation();
        this.search.value = "";
        this.reset();
      }
    });
    this.archivedButton.addEventListener("click", () => {
      this.archived = !this.archived;
      this.archivedButton.setAttribute("aria-pressed", String(this.archived));
      this.modeNote.hidden = !this.archived;
      this.reset();
    });
    this.list.addEventListener("click", (event) => this.onListClick(event));
    this.menu.addEventListener("click", (event) => this.onMenuClick(event));
    this.menu.addEventListener("keydown", (event) => this.onMenuKey(event));
    document.addEventListener("click", (event) => {
      if (!this.menu.hidden && !this.menu.contains(event.target) && !event.target.closest(".conv-more")) this.closeMenu();
    });
    this.scroller.addEventListener("scroll", () => this.closeMenu(false), { passive: true });
    new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting)) this.loadMore();
    }, { root: this.scroller, rootMargin: "200px" }).observe(this.sentinel);
  }

  async api(url, options = {}) {
    const response = await fetch(url, {
      credentials: "same-origin",
      ...options,
      headers: { Accept: "application/json", "X-CSRFToken": this.app.boot.csrf_token, ...(options.headers || {}) },
    });
    if (response.status === 401) {
      this.app.goToLogin();
      throw new Error("unauthenticated");
    }
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(body?.error?.message || "That didn't work. Try again.");
    return body;
  }

  reset() {
    this.generation += 1;
    this.query = this.search.value.trim();
    this.items = [];
    this.results = null;
    this.next = null;
    this.loading = false;
    this.render();
    if (this.query && !this.archived) this.runSearch();
    else this.loadMore(true);
  }

  async runSearch() {
    const generation = this.generation;
    try {
      const body = await this.api(`${this.app.boot.urls.search}?${new URLSearchParams({ q: this.query })}`);
      if (generation !== this.generation) return;
      this.results = body.results;
      this.loaded = true;
      this.root.dataset.loaded = "true";
      this.render();
    } catch (error) {
      if (generation === this.generation && error.message !== "unauthenticated") toast("Search didn't work. Try again.", "error");
    }
  }

  renderResults() {
    const current = this.app.conversationId;
    const rows = this.results.map((result) => {
      const link = h("a", {
        class: "conv-link conv-result",
        href: `/c/${result.id}`,
        dataset: { id: result.id, message: result.message || "" },
        "aria-current": result.id === current ? "page" : null,
      },
      h("span", { class: "conv-title" }, markedFragment(result.title_html, displayTitle(result.title))),
      result.snippet ? h("span", { class: "conv-snippet" }, markedFragment(result.snippet, "")) : null);
      return h("li", { class: `conv-item conv-item-result${result.id === current ? " is-current" : ""}`, dataset: { id: result.id } }, link);
    });
    this.list.replaceChildren(
      h("section", { class: "conv-group", "aria-labelledby": "conv-group-results" },
        h("h2", { class: "conv-group-title", id: "conv-group-results", text: "Search results" }),
        h("ul", { class: "conv-items" }, rows)),
    );
    this.emptyNote.hidden = rows.length > 0;
    this.emptyNote.textContent = "No chats match your search.";
  }

  async loadMore(first = false) {
    if (this.loading || (!first && !this.next)) return;
    this.loading = true;
    const generation = this.generation;
    const params = new URLSearchParams();
    if (this.next) params.set("cursor", this.next);
    if (this.query) params.set("q", this.query);
    if (this.archived) params.set("archived", "1");
    try {
      const page = await this.api(`${this.app.boot.urls.conversations}?${params}`);
      if (generation !== this.generation) return;
      const known = new Set(this.items.map((item) => item.id));
      this.items.push(...page.conversations.filter((item) => !known.has(item.id)));
      this.next = page.next;
      this.loaded = true;
      this.root.dataset.loaded = "true"; // tests wait for this
      this.render();
    } catch (error) {
      if (generation === this.generation && error.message !== "unauthenticated") toast("Couldn't load your chats.", "error");
    } finally {
      if (generation === this.generation) this.loading = false;
    }
    // Still room on screen (a tall window, a short page): keep going.
    if (generation === this.generation && this.next && this.scroller.scrollHeight <= this.scroller.clientHeight + 200) {
      this.loadMore();
    }
  }

  sorted() {
    return [...this.items].sort((a, b) =>
      a.pinned !== b.pinned ? (a.pinned ? -1 : 1) : b.updated_at.localeCompare(a.updated_at));
  }

  render() {
    if (this.results) {
      this.renderResults();
      return;
    }
    const today = startOfDay(Date.now());
    const groups = new Map();
    for (const item of this.sorted()) {
      const name = groupOf(item, today);
      if (!groups.has(name)) groups.set(name, []);
      groups.get(name).push(item);
    }
    const current = this.app.conversationId;
    // The list is rebuilt (titles arrive live): keep the keyboard focus on the same row's control.
    const active = this.list.contains(document.activeElement) ? document.activeElement : null;
    const focusKey = active?.dataset.id ? [active.dataset.id, active.className] : null;
    const sections = [];
    for (const [name, items] of groups) {
      const headingId = `conv-group-${name.replace(/\W+/g, "-").toLowerCase()}`;
      sections.push(
        h("section", { class: "conv-group", "aria-labelledby": headingId },
          h("h2", { class: "conv-group-title", id: headingId, text: name }),
          h("ul", { class: "conv-items" }, items.map((item) => this.renderItem(item, current)))),
      );
    }
    this.list.replaceChildren(...sections);
    if (focusKey) {
      [...this.list.querySelectorAll(`[data-id="${CSS.escape(focusKey[0])}"]`)]
        .find((el) => el.className === focusKey[1])?.focus();
    }
    const empty = this.loaded && !this.items.length;
    this.emptyNote.hidden = !empty;
    this.emptyNote.textContent = this.query ? "No chats match your search." : this.archived ? "No archived chats." : "No chats yet.";
  }

  renderItem(item, current) {
    const title = displayTitle(item.title);
    const link = h("a", {
      class: "conv-link",
      href: `/c/${item.id}`,
      dataset: { id: item.id },
      "aria-current": item.id === current ? "page" : null,
    }, h("span", { class: "conv-title", text: title }));
    const more = h("button", {
      type: "button",
      class: "conv-more",
      "aria-label": `Options for ${title}`,
      "aria-haspopup": "menu",
      "aria-expanded": "false",
      dataset: { id: item.id },
    }, icon("dots"));
    const row = h("li", { class: "conv-item", dataset: { id: item.id } }, link, more);
    if (item.id === current) row.classList.add("is-current");
    if (this.renaming === item.id) {
      row.replaceChildren(this.renameField(item));
    }
    return row;
  }

  find(id) {
    return this.items.find((item) => item.id === id);
  }

  /** A conversation the user just created or wrote in: at the top of its group. */
  touch(conversation, { title } = {}) {
    let item = this.find(conversation.id);
    if (!item) {
      if (this.archived || this.query) return;
      item = { id: conversation.id, title: conversation.title || "", pinned: Boolean(conversation.pinned), archived: false };
      this.items.unshift(item);
    }
    item.updated_at = new Date().toISOString();
    if (title !== undefined) item.title = title;
    this.render();
  }

  setTitle(id, title) {
    const item = this.find(id);
    if (item) {
      item.title = title;
      this.render();
    }
  }

  setCurrent(id) {
    for (const row of this.list.querySelectorAll(".conv-item")) {
      const current = row.dataset.id === id;
      row.classList.toggle("is-current", current);
      const link = row.querySelector(".conv-link");
      if (current) link?.setAttribute("aria-current", "page");
      else link?.removeAttribute("aria-current");
    }
  }

  onListClick(event) {
    const more = event.target.closest(".conv-more");
    if (more) {
      event.preventDefault();
      if (this.menuFor === more.dataset.id && !this.menu.hidden) this.closeMenu();
      else this.openMenu(more);
      return;
    }
    const link = event.target.closest(".conv-link");
    if (link && !event.metaKey && !event.ctrlKey && !event.shiftKey && event.button === 0) {
      event.preventDefault();
      if (link.dataset.message) this.app.olderMessages.openAt(link.dataset.id, link.dataset.message);
      else this.app.openConversation(link.dataset.id, { push: true });
    }
  }

  openMenu(button) {
    const item = this.find(button.dataset.id);
    if (!item) return;
    this.closeMenu(false);
    this.menuFor = item.id;
    this.menuButton = button;
    button.setAttribute("aria-expanded", "true");
    this.menu.querySelector('[data-conv-action="pin"] span').textContent = item.pinned ? "Unpin" : "Pin";
    this.menu.querySelector('[data-conv-action="archive"] span').textContent = item.archived ? "Unarchive" : "Archive";
    this.menu.hidden = false;
    const rect = button.getBoundingClientRect();
    const menuHeight = this.menu.offsetHeight;
    const top = rect.bottom + 4 + menuHeight > window.innerHeight ? rect.top - menuHeight - 4 : rect.bottom + 4;
    this.menu.style.top = `${Math.max(8, top)}px`;
    this.menu.style.left = `${Math.min(rect.left, window.innerWidth - this.menu.offsetWidth - 8)}px`;
    this.menu.querySelector("[role=menuitem]").focus();
  }

  closeMenu(restoreFocus = true) {
    if (this.menu.hidden) return;
    this.menu.hidden = true;
    this.menuButton?.setAttribute("aria-expanded", "false");
    if (restoreFocus && this.menuButton?.isConnected) this.menuButton.focus();
    this.menuFor = null;
  }

  onMenuKey(event) {
    const items = [...this.menu.querySelectorAll("[role=menuitem]")];
    const index = items.indexOf(document.activeElement);
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      const step = event.key === "ArrowDown" ? 1 : -1;
      items[(index + step + items.length) % items.length].focus();
    } else if (event.key === "Home" || event.key === "End") {
      event.preventDefault();
      items[event.key === "Home" ? 0 : items.length - 1].focus();
    } else if (event.key === "Escape" || event.key === "Tab") {
      event.preventDefault();
      event.stopPropagation();
      this.closeMenu();
    }
  }

  async onMenuClick(event) {
    const button = event.target.closest("[data-conv-action]");
    if (!button) return;
    const item = this.find(this.menuFor);
    this.closeMenu(button.dataset.convAction !== "rename");
    if (!item) return;
    switch (button.dataset.convAction) {
      case "rename":
        this.startRename(item);
        break;
      case "pin":
        await this.patch(item, { pinned: !item.pinned });
        break;
      case "archive":
        await this.patch(item, { archived: !item.archived }, { remove: true });
        break;
      case "delete":
        this.confirmDelete(item);
        break;
      case "share":
        this.shareDialog.open(item);
        break;
      case "export-md":
      case "export-json": {
        const format = button.dataset.convAction === "export-md" ? "md" : "json";
        window.location.assign(`${this.app.boot.urls.conversations}/${item.id}/export?format=${format}`);
        break;
      }
      default:
    }
  }

  async patch(item, changes, { remove = false } = {}) {
    try {
      const updated = await this.api(`${this.app.boot.urls.conversations}/${item.id}`, {
        method: "PATCH",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(changes),
      });
      Object.assign(item, updated);
      if (remove) {
        this.items = this.items.filter((other) => other.id !== item.id);
        toast(changes.archived ? "Chat archived." : "Chat restored.");
      }
      if ("title" in changes && item.id === this.app.conversationId) this.app.setTitle(item.title);
      this.render();
    } catch (error) {
      toast(error.message, "error");
    }
  }

  startRename(item) {
    this.renaming = item.id;
    this.render();
    const input = this.list.querySelector(".conv-rename input");
    input?.focus();
    input?.select();
  }

  renameField(item) {
    const input = h("input", { type: "text", maxlength: 200, "aria-label": "Chat title" });
    input.value = item.title;
    let done = false;
    const finish = async (save) => {
      if (done) return;
      done = true;
      this.renaming = null;
      const title = input.value.trim();
      if (save && title && title !== item.title) await this.patch(item, { title });
      else this.render();
      this.list.querySelector(`.conv-more[data-id="${item.id}"]`)?.focus();
    };
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        event.preventDefault();
        finish(true);
      } else if (event.key === "Escape") {
        event.preventDefault();
        event.stopPropagation();
        finish(false);
      }
    });
    input.addEventListener("blur", () => finish(true));
    return h("div", { class: "conv-rename" }, input);
  }

  confirmDelete(item) {
    const dialog = this.deleteDialog;
    dialog.querySelector(".delete-name").textContent = displayTitle(item.title);
    dialog.returnValue = "";
    dialog.addEventListener("close", async () => {
      if (dialog.returnValue !== "delete") {
        this.list.querySelector(`.conv-more[data-id="${item.id}"]`)?.focus();
        return;
      }
      try {
        await this.api(`${this.app.boot.urls.conversations}/${item.id}`, { method: "DELETE" });
        this.items = this.items.filter((other) => other.id !== item.id);
        if (this.results) this.results = this.results.filter((other) => other.id !== item.id);
        this.render();
        const wasOpen = item.id === this.app.conversationId;
        if (wasOpen) this.app.newChat();
        undoToast("Chat deleted.", async () => {
          const restored = await this.api(`${this.app.boot.urls.conversations}/${item.id}/restore`, { method: "POST" });
          if (!this.find(item.id) && !this.query && restored.archived === this.archived) this.items.push(restored);
          this.render();
          toast("Chat restored.");
          if (wasOpen) this.app.openConversation(item.id, { push: true });
        });
      } catch (error) {
        toast(error.message, "error");
      }
    }, { once: true });
    dialog.showModal();
  }
}
