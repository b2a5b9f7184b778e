// Older turns of a long conversation, loaded as the reader scrolls up (a conversation opens with its newest
// messages; GET /api/conversations/<id>/messages?before= gives the rest), and opening a search result at its
// message: the branch through it is selected over the websocket, older turns are loaded until it is there,
// then it is scrolled to and flashed.

const TOP_PX = 400; // start loading older turns this close to the top
const PAGE = 100;

export class OlderMessages {
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
