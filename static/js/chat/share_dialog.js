// The share dialog of a sidebar chat: create, copy or turn off its read-only public link
// (/api/conversations/<id>/share).

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
