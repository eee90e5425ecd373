// People: persons, groups and facesets, each listed a page at a time with a thumbnail and its
// count; create, rename, delete; faces added by upload and removed; group members.

import { call, largestFace } from "./api.js";
import {
  busy, confirmDelete, dropZone, el, fail, faceThumb, pageHeader, pager, promptText, toast,
} from "./ui.js";

const PAGE_SIZE = 12;

// How each kind is spelled on the wire (the seed's names), and what its members are.
const KINDS = {
  persons: { one: "person", idKey: "person_id", list: "info/list_persons", members: "face_ids", memberNoun: "face" },
  groups: { one: "group", idKey: "group_id", list: "info/list_groups", members: "persons", memberNoun: "person" },
  facesets: { one: "faceset", idKey: "faceset_id", list: "info/list_facesets", members: "face_ids", memberNoun: "face" },
};

const plural = (count, noun) => `${count} ${noun}${count === 1 ? "" : "s"}`;
const go = (hash) => { location.hash = hash; };

/** info/person, asked once per page however many groups share a first member. */
function personLookup() {
  const asked = new Map();
  return (personId) => {
    if (!asked.has(personId)) asked.set(personId, call("info/person", { person_id: personId }));
    return asked.get(personId);
  };
}

/** A listed entity's details: its count and the face that stands for it (groups: a member's).
 * The seed's listings carry ids and names only, so this is one info call a card (two for a
 * group: its persons, then its first person's faces). */
async function details(kind, entity, person) {
  const spec = KINDS[kind];
  const info = await call(`info/${spec.one}`, { [spec.idKey]: entity[spec.idKey] });
  const members = info[spec.members];
  let face = members[0];
  if (kind === "groups") face = members.length ? (await person(members[0].person_id)).face_ids[0] : undefined;
  return { count: members.length, face };
}

async function rename(kind, id, name, after) {
  const spec = KINDS[kind];
  const text = await promptText(`Rename ${spec.one}`, "Name", name);
  if (!text || text === name) return;
  try {
    await call(`${spec.one}/change`, { [spec.idKey]: id, name: text });
    toast(`Renamed to ${text}`, "success");
    after();
  } catch (error) {
    fail(error);
  }
}

async function remove(kind, id, name, after) {
  const spec = KINDS[kind];
  const what = kind === "persons" ? " The person leaves every group that holds it." : "";
  if (!(await confirmDelete(`Delete ${spec.one} “${name}”?`, `This cannot be undone.${what}`))) return;
  try {
    await call(`${spec.one}/delete`, { [spec.idKey]: id });
    toast(`Deleted ${name}`, "success");
    after();
  } catch (error) {
    fail(error);
  }
}

function tabs(kind) {
  return el("div.tabs", { role: "tablist" }, Object.keys(KINDS).map((name) =>
    el(`a.tab${name === kind ? ".on" : ""}`, { href: `#people/${name}`, role: "tab" },
      name[0].toUpperCase() + name.slice(1))));
}

/** A card with a placeholder and "…"; show(settled details) fills both in. */
function entityCard(kind, entity, refresh) {
  const spec = KINDS[kind];
  const id = entity[spec.idKey];
  const thumb = el("div.thumb.thumb-lg.placeholder");
  const count = el("span.muted.small", {}, "…");
  const node = el("article.entity-card", { dataset: { id } },
    el("a.entity-main", { href: `#people/${spec.one}/${id}` }, thumb,
      el("div.entity-text", {}, el("strong.entity-name", {}, entity.name), count)),
    el("div.entity-actions", {},
      el("button.ghost.small", { onclick: () => rename(kind, id, entity.name, refresh) }, "Rename"),
      el("button.ghost.small.danger-text", { onclick: () => remove(kind, id, entity.name, refresh) }, "Delete")));
  const show = ({ status, value, reason }) => {
    if (status === "rejected") { count.textContent = reason.status || "?"; return; }
    thumb.replaceWith(faceThumb(value.face, "lg"));
    count.textContent = plural(value.count, spec.memberNoun);
  };
  return { node, show };
}

/** The create form: a name and, for persons and facesets, photos whose largest faces join. */
function createPanel(kind, done) {
  const spec = KINDS[kind];
  const files = [];
  const chosen = el("div.chosen");
  const name = el("input", { name: "name", required: true, maxlength: 256, placeholder: `${spec.one} name`, autocomplete: "off" });
  const showChosen = () => chosen.replaceChildren(...files.map((file) => el("span.chip", {}, file.name)));
  const zone = kind === "groups" ? null : dropZone("Photos of the faces to add", (picked) => {
    files.push(...picked);
    showChosen();
  }, { multiple: true });
  const submit = el("button.primary", { type: "submit" }, `Create ${spec.one}`);
  const form = el("form.panel.create-panel", {},
    el("h3", {}, `New ${spec.one}`),
    el("label", {}, "Name", name),
    zone, chosen,
    el("div.actions", {},
      el("button.ghost", { type: "button", onclick: () => form.remove() }, "Cancel"), submit));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(submit, (async () => {
      const faceIds = [];
      for (const file of files) faceIds.push((await largestFace(file)).face.face_id);
      const params = { name: name.value.trim() };
      if (faceIds.length) params.face_id = faceIds;
      const created = await call(`${spec.one}/create`, params);
      toast(`Created ${spec.one} ${params.name}`, "success");
      done(created[spec.idKey]);
    })().catch(fail));
  });
  return form;
}

async function listing(page, kind, index) {
  const spec = KINDS[kind];
  const grid = el("div.entity-grid", {}, el("p.muted", {}, "Loading…"));
  const foot = el("div");
  const refresh = () => listing(page, kind, index);
  const slot = el("div");
  const newButton = el("button.primary", { onclick: () => {
    if (!slot.firstChild) slot.append(createPanel(kind, (id) => go(`#people/${spec.one}/${id}`)));
  } }, `New ${spec.one}`);
  page.replaceChildren(
    pageHeader("People", "Persons, groups of persons, and facesets (libraries of faces).", newButton),
    tabs(kind), slot, grid, foot);
  try {
    const body = await call(spec.list, { limit: PAGE_SIZE + 1, offset: index * PAGE_SIZE });
    const rows = body[kind].slice(0, PAGE_SIZE);
    const cards = rows.map((entity) => entityCard(kind, entity, refresh));
    grid.replaceChildren(...cards.map((card) => card.node));
    if (!rows.length) {
      grid.replaceChildren(el("p.empty", {}, index ? "No more." : `No ${kind} yet: “New ${spec.one}” makes one.`));
    }
    const more = body[kind].length > PAGE_SIZE;
    if (index || more) foot.replaceChildren(pager(index, PAGE_SIZE, rows.length, more, (next) => listing(page, kind, next)));
    // Every card filled in at once, so the page's thumbnails are asked for in one call.
    const person = personLookup();
    const found = await Promise.allSettled(rows.map((entity) => details(kind, entity, person)));
    found.forEach((result, i) => cards[i].show(result));
  } catch (error) {
    grid.replaceChildren(el("p.error", {}, `Could not list ${kind}: ${error.status || error}`));
    fail(error);
  }
}

function faceTile(faceId, onRemove) {
  return el("figure.face-tile", { dataset: { face: faceId } }, faceThumb(faceId, "lg"),
    el("figcaption", {}, el("code.small.muted", { title: faceId }, faceId),
      el("button.ghost.small.danger-text", { onclick: onRemove }, "Remove")));
}

/** Faces of a person or faceset: tiles with remove, a drop zone that adds uploads. */
function facesSection(kind, id, faceIds, refresh) {
  const spec = KINDS[kind];
  const add = (files) => (async () => {
    const added = [];
    for (const file of files) added.push((await largestFace(file)).face.face_id);
    await call(`${spec.one}/add_face`, { [spec.idKey]: id, face_id: added });
    toast(`Added ${plural(added.length, "face")}`, "success");
    refresh();
  })().catch(fail);
  const removeFace = async (faceId) => {
    if (!(await confirmDelete("Remove this face?", `The face leaves this ${spec.one}.`, "Remove"))) return;
    try {
      await call(`${spec.one}/remove_face`, { [spec.idKey]: id, face_id: [faceId] });
      refresh();
    } catch (error) {
      fail(error);
    }
  };
  return el("section.panel", {},
    el("div.panel-head", {}, el("strong", {}, plural(faceIds.length, "face"))),
    el("div.face-grid", {}, faceIds.map((faceId) => faceTile(faceId, () => removeFace(faceId))),
      faceIds.length ? null : el("p.empty", {}, "No faces yet: add a photo.")),
    dropZone(`Add faces to this ${spec.one}`, add, { multiple: true }));
}

/** Members of a group: person rows with their face, remove; a picker of persons to add. */
function membersSection(id, persons, refresh) {
  const picker = el("select", { name: "person", "aria-label": "Person to add" },
    el("option", { value: "" }, "Choose a person…"));
  call("info/list_persons", { limit: 500 }).then((body) => {
    const inside = new Set(persons.map((p) => p.person_id));
    picker.append(...body.persons.filter((p) => !inside.has(p.person_id)).map((p) =>
      el("option", { value: p.person_id }, p.name)));
  }, fail);
  const addButton = el("button.primary", { onclick: () => {
    if (!picker.value) return;
    busy(addButton, call("group/add_person", { group_id: id, person_id: [picker.value] })
      .then(() => { toast("Person added", "success"); refresh(); }, fail));
  } }, "Add to group");
  const removePerson = async (person) => {
    if (!(await confirmDelete(`Remove ${person.name} from the group?`, "The person itself stays.", "Remove"))) return;
    call("group/remove_person", { group_id: id, person_id: [person.person_id] }).then(refresh, fail);
  };
  const row = (person) => {
    const thumb = el("div.thumb.thumb-sm.placeholder");
    const count = el("span.muted.small");
    const show = ({ status, value }) => {
      if (status === "rejected") { count.textContent = "?"; return; }
      thumb.replaceWith(faceThumb(value.face_ids[0], "sm"));
      count.textContent = plural(value.face_ids.length, "face");
    };
    return { show, node: el("tr", { dataset: { id: person.person_id } },
      el("td", {}, thumb),
      el("td", {}, el("a", { href: `#people/person/${person.person_id}` }, person.name)),
      el("td", {}, count),
      el("td", {}, el("code.small.muted", {}, person.person_id)),
      el("td.right", {}, el("button.ghost.small.danger-text", { onclick: () => removePerson(person) }, "Remove"))) };
  };
  const rows = persons.map(row);
  // All rows filled in at once: their thumbnails in one call.
  Promise.allSettled(persons.map((p) => call("info/person", { person_id: p.person_id })))
    .then((found) => found.forEach((result, i) => rows[i].show(result)));
  return el("section.panel", {},
    el("div.panel-head", {}, el("strong", {}, plural(persons.length, "person")),
      el("div.inline", {}, picker, addButton)),
    persons.length
      ? el("table.table", {}, el("thead", {}, el("tr", {}, el("th"), el("th", {}, "Name"), el("th", {}, "Faces"),
        el("th", {}, "person_id"), el("th"))), el("tbody", {}, rows.map((r) => r.node)))
      : el("p.empty", {}, "No persons in this group yet."));
}

async function detail(page, kind, id) {
  const spec = KINDS[kind];
  const refresh = () => detail(page, kind, id);
  const back = el("a.back", { href: `#people/${kind}` }, `‹ All ${kind}`);
  page.replaceChildren(back, el("p.muted", {}, "Loading…"));
  let info;
  try {
    info = await call(`info/${spec.one}`, { [spec.idKey]: id });
  } catch (error) {
    page.replaceChildren(back, el("p.error", {}, `Could not open this ${spec.one}: ${error.status || error}`));
    fail(error);
    return;
  }
  const members = info[spec.members];
  page.replaceChildren(back,
    pageHeader(info.name, `${spec.one} · ${id}${info.user_data ? ` · ${info.user_data}` : ""}`,
      el("button.ghost", { onclick: () => rename(kind, id, info.name, refresh) }, "Rename"),
      el("button.danger", { onclick: () => remove(kind, id, info.name, () => go(`#people/${kind}`)) }, `Delete ${spec.one}`)),
    kind === "groups" ? membersSection(id, members, refresh) : facesSection(kind, id, members, refresh));
}

const SINGULAR = { person: "persons", group: "groups", faceset: "facesets" };

/** #people/<persons|groups|facesets> lists a kind; #people/<person|group|faceset>/<id> opens one. */
export function render(page, [what = "persons", arg] = []) {
  if (SINGULAR[what]) return detail(page, SINGULAR[what], arg);
  return listing(page, KINDS[what] ? what : "persons", 0);
}
