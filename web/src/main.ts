// vessel's web console: the shell (navigation, login, session) and the routes.

import "./style.css";
import { login, logout, resumeSession, setUnauthorizedHandler } from "./api";
import { h } from "./dom";
import { onStreamState, startEvents, stopEvents } from "./events";
import { forgetGuests, loadGuests, reloadGuests } from "./guests";
import { leaveCurrent, navigate, render, route, startRouter } from "./router";
import { overviewPage } from "./pages/overview";
import { guestsPage } from "./pages/guests";
import { containerPage, vmPage } from "./pages/guest";
import { newContainerPage, newVmPage } from "./pages/create";
import { imagesPage, networksPage, poolsPage, volumesPage } from "./pages/resources";
import { eventsPage } from "./pages/events";

let loggedIn = false;
let loginMessage = "";
let wanted = "/";
const app = document.getElementById("app")!;
let main: HTMLElement | null = null;

const NAV: [string, string][] = [
  ["/", "Overview"],
  ["/guests", "Guests"],
  ["/images", "Images"],
  ["/networks", "Networks"],
  ["/volumes", "Volumes"],
  ["/pools", "Pools"],
  ["/events", "Events"],
];

function shell(): HTMLElement {
  if (main && main.isConnected) return main;
  const live = h("span", { class: "live", title: "event stream" }, "live");
  onStreamState((up) => {
    live.classList.toggle("down", !up);
    live.textContent = up ? "live" : "reconnecting";
  });
  const nav = h(
    "nav",
    { class: "side" },
    h("div", { class: "brand" }, "vessel"),
    h("ul", null, NAV.map(([href, label]) => h("li", null, h("a", { href, "data-link": true, "data-nav": href }, label)))),
    h("div", { class: "nav-new" },
      h("a", { href: "/new/container", "data-link": true, class: "button", "data-nav": "/new/container" }, "New container"),
      h("a", { href: "/new/vm", "data-link": true, class: "button", "data-nav": "/new/vm" }, "New VM"),
    ),
    h("div", { class: "nav-foot" }, live,
      h("button", { type: "button", class: "secondary", id: "logout", on: { click: () => void doLogout() } }, "Log out")),
  );
  main = h("main", { id: "main" });
  app.replaceChildren(h("div", { class: "layout" }, nav, main));
  return main;
}

function markNav(nav: string): void {
  for (const a of app.querySelectorAll<HTMLAnchorElement>("nav a[data-nav]")) {
    const n = a.dataset.nav!;
    a.classList.toggle("active", n === nav || (n === "/guests" && (nav === "/vm/:id" || nav === "/container/:id")));
  }
}

async function doLogout(): Promise<void> {
  try {
    await logout();
  } catch {
    /* gone already */
  }
  endSession("");
}

function endSession(message: string): void {
  loggedIn = false;
  loginMessage = message;
  stopEvents();
  forgetGuests();
  leaveCurrent();
  main = null;
  if (location.pathname !== "/login") wanted = location.pathname + location.search;
  navigate("/login", true);
}

function loginPage(): void {
  main = null;
  const err = h("p", { class: "error", role: "alert", id: "login-error" }, loginMessage);
  const pw = h("input", { type: "password", name: "password", id: "password", autocomplete: "current-password", required: true });
  const btn = h("button", { type: "submit", class: "primary" }, "Log in");
  const form = h(
    "form",
    { class: "login", id: "login-form" },
    h("h1", null, "vessel"),
    h("label", null, "Password", pw),
    btn,
    err,
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    btn.disabled = true;
    err.textContent = "";
    try {
      await login(pw.value);
      loggedIn = true;
      loginMessage = "";
      await afterLogin();
      const to = wanted && wanted !== "/login" ? wanted : "/";
      wanted = "/";
      navigate(to, true);
    } catch (x: any) {
      err.textContent = x?.message || String(x);
      pw.select();
    } finally {
      btn.disabled = false;
    }
  });
  app.replaceChildren(h("div", { class: "login-wrap" }, form));
  pw.focus();
}

async function afterLogin(): Promise<void> {
  startEvents();
  let first = true;
  onStreamState((up) => {
    // after a break in the stream, events may have been missed
    if (up && !first && loggedIn) void reloadGuests().catch(() => {});
    if (up) first = false;
  });
  await loadGuests().catch(() => {});
}

function wrap(page: (root: HTMLElement, ctx: any) => any) {
  return (_root: HTMLElement, ctx: any) => page(shell(), ctx);
}

route("/login", () => loginPage(), "/login");
route("/", wrap(overviewPage));
route("/guests", wrap(guestsPage));
route("/vm/:id", wrap(vmPage));
route("/container/:id", wrap(containerPage));
route("/new/container", wrap(newContainerPage));
route("/new/vm", wrap(newVmPage));
route("/images", wrap(imagesPage));
route("/networks", wrap(networksPage));
route("/volumes", wrap(volumesPage));
route("/pools", wrap(poolsPage));
route("/events", wrap(eventsPage));

setUnauthorizedHandler((message) => {
  if (loggedIn) endSession(message);
});

async function boot(): Promise<void> {
  startRouter(
    () => (location.pathname === "/login" ? app : shell()),
    (path, nav) => {
      if (path !== "/login" && !loggedIn) {
        wanted = path + location.search;
        navigate("/login", true);
        return false;
      }
      if (path === "/login" && loggedIn) {
        navigate("/", true);
        return false;
      }
      if (path !== "/login") {
        shell();
        markNav(nav);
      }
      return true;
    },
  );
  try {
    const s = await resumeSession();
    loggedIn = s.live;
    // an old session that ended: say why on the login form
    if (!s.live && /expired/.test(s.message)) loginMessage = s.message;
  } catch {
    loggedIn = false;
  }
  if (loggedIn) await afterLogin();
  await render();
}

void boot();
