// The console's shell: sign-in, the sidebar and the hash routes (#analyse, #people/..., #match,
// #account), each page a module with render(pageElement, routeArguments).

import * as account from "./account.js";
import * as analyse from "./analyse.js";
import { SIGNED_OUT, credentials, forget, signIn } from "./api.js";
import * as match from "./match.js";
import * as people from "./people.js";
import { describe } from "./ui.js";

const PAGES = { analyse, people, match, account };
const TITLES = { analyse: "Analyse", people: "People", match: "Match", account: "Account" };

function show(signedIn) {
  document.getElementById("signin").hidden = signedIn;
  document.getElementById("shell").hidden = !signedIn;
}

function route() {
  if (!credentials()) {
    show(false);
    document.querySelector("#signin-form input[name=api_id]").focus();
    return;
  }
  show(true);
  const [name, ...rest] = location.hash.slice(1).split("/").map(decodeURIComponent);
  const pageName = PAGES[name] ? name : "analyse";
  for (const link of document.querySelectorAll(".sidebar a[data-page]")) {
    link.classList.toggle("active", link.dataset.page === pageName);
  }
  document.title = `${TITLES[pageName]} · facesrv console`;
  document.getElementById("who").textContent = credentials().api_id;
  PAGES[pageName].render(document.getElementById("page"), rest);
}

document.getElementById("signin-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  const error = document.getElementById("signin-error");
  const button = form.querySelector("button");
  error.hidden = true;
  button.disabled = true;
  try {
    await signIn(form.api_id.value.trim(), form.api_secret.value);
    form.reset();
    route();
  } catch (failure) {
    error.textContent = describe(failure);
    error.hidden = false;
  } finally {
    button.disabled = false;
  }
});

document.getElementById("signout").addEventListener("click", () => {
  forget();
  location.hash = "";
  route();
});

window.addEventListener(SIGNED_OUT, ({ detail }) => {
  const error = document.getElementById("signin-error");
  error.textContent = `Signed out: ${describe(detail)}`;
  error.hidden = false;
  route();
});

window.addEventListener("hashchange", route);
route();
