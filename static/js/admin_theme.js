// The admin follows the site's theme. The chat keeps its choice in the `theme` cookie (light, dark, or none for
// the system's: static/js/theme.js); Django's admin keeps its own in localStorage ("light", "dark", "auto") and
// reads it in admin/js/theme.js, which this classic script runs before. The admin's own toggle then writes its
// choice back to the cookie, so the chat follows the admin too.
"use strict";
{
  const match = document.cookie.match(/(?:^|;\s*)theme=(light|dark)(?:;|$)/);
  localStorage.setItem("theme", match ? match[1] : "auto");

  window.addEventListener("load", () => {
    for (const button of document.getElementsByClassName("theme-toggle")) {
      button.addEventListener("click", () => setTimeout(() => {
        const choice = localStorage.getItem("theme");
        const secure = location.protocol === "https:" ? "; Secure" : "";
        const value = choice === "light" || choice === "dark" ? `${choice}; Max-Age=31536000` : "; Max-Age=0";
        document.cookie = `theme=${value}; Path=/; SameSite=Lax${secure}`;
      }));
    }
  });
}
