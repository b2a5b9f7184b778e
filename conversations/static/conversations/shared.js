// The shared conversation page: the server sends each message as escaped plain text (readable without
// script); this renders it as markdown through the chat's own sanitising renderer, and wires Copy on code.

import { renderMarkdown } from "/static/js/chat/markdown.js";

for (const text of document.querySelectorAll(".shared-text")) {
  const source = text.textContent;
  text.classList.add("markdown", "is-rendered");
  renderMarkdown(text, source);
}

document.addEventListener("click", async (event) => {
  const button = event.target.closest(".code-copy");
  const code = button?.closest(".code-block")?.querySelector("code");
  if (!code) return;
  try {
    await navigator.clipboard.writeText(code.textContent);
    button.textContent = "Copied!";
    setTimeout(() => (button.textContent = "Copy code"), 1500);
  } catch {
    // no clipboard permission: nothing to do
  }
});
