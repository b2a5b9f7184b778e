// Loaded by base.html on every page.
//
// Theme: "system" follows prefers-color-scheme; "light" and "dark" set data-theme on <html>. The choice is kept
// in a cookie so the server renders data-theme itself and a page never flashes the wrong theme.
// Menus: <details data-menu> disclosures close on Escape or on a click outside them.

const COOKIE = "theme";
const root = document.documentElement;

function currentTheme() {
  return root.dataset.theme === "light" || root.dataset.theme === "dark" ? root.dataset.theme : "system";
}

function syncThemeButtons() {
  const theme = currentTheme();
  for (const button of document.querySelectorAll("[data-theme-choice]")) {
    button.setAttribute("aria-pressed", String(button.dataset.themeChoice === theme));
  }
}

function setTheme(choice) {
  const secure = location.protocol === "https:" ? "; Secure" : "";
  if (choice === "light" || choice === "dark") {
    root.dataset.theme = choice;
    document.cookie = `${COOKIE}=${choice}; Path=/; Max-Age=31536000; SameSite=Lax${secure}`;
  } else {
    delete root.dataset.theme;
    document.cookie = `${COOKIE}=; Path=/; Max-Age=0; SameSite=Lax${secure}`;
  }
  syncThemeButtons();
}

function openMenus() {
  return document.querySelectorAll("details[data-menu][open]");
}

document.addEventListener("click", (event) => {
  const choice = event.target.closest("[data-theme-choice]");
  if (choice) {
    setTheme(choice.dataset.themeChoice);
  }
  for (const menu of openMenus()) {
    if (!menu.contains(event.target)) {
      menu.open = false;
    }
  }
});

document.addEventListener("keydown", (event) => {
  if (event.key !== "Escape") {
    return;
  }
  for (const menu of openMenus()) {
    menu.open = false;
    menu.querySelector("summary")?.focus();
  }
});

syncThemeButtons();
