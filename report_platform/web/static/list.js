// The Scheduled Tasks list: client-side filters, folders, row actions and drag and drop.
import { api, reloadSaying, say, showError } from "./common.js";

const table = document.getElementById("reports");
const filters = document.getElementById("filters");
const count = document.getElementById("filter-count");
const DRAG_TYPE = "application/x-report-id";

const reportPath = (id) => `/api/v1/reports/${encodeURIComponent(id)}`;
const folderPath = (name, organization) =>
  `/api/v1/folders/${encodeURIComponent(name)}${organization ? `?organization=${encodeURIComponent(organization)}` : ""}`;

// Filters: name (contains, any case), type, status, folder; kept in the address so a reload keeps them.

function applyFilters() {
  const name = filters.elements.name.value.trim().toLowerCase();
  const type = filters.elements.type.value;
  const status = filters.elements.status.value;
  const folder = filters.elements.folder.value;
  let shown = 0;
  let total = 0;
  for (const group of table.tBodies) {
    const groupFolder = group.dataset.folder;
    const groupShown = !folder || (folder === "-" ? groupFolder === "" : groupFolder === folder);
    group.hidden = !groupShown;
    let rowsShown = 0;
    for (const row of group.querySelectorAll("tr.report")) {
      total += 1;
      const match =
        groupShown &&
        (!name || row.dataset.name.toLowerCase().includes(name)) &&
        (!type || row.dataset.type === type) &&
        (!status || row.dataset.status === status);
      row.hidden = !match;
      if (match) rowsShown += 1;
    }
    shown += rowsShown;
    const empty = group.querySelector("tr.empty");
    if (empty) empty.hidden = group.querySelectorAll("tr.report").length > 0;
  }
  const filtered = name || type || status || folder;
  count.textContent = filtered
    ? `${shown} of ${total} report${total === 1 ? "" : "s"} match`
    : `${total} report${total === 1 ? "" : "s"}`;
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries({ name: filters.elements.name.value.trim(), type, status, folder })) {
    if (value) query.set(key, value);
  }
  const search = query.toString();
  history.replaceState(null, "", search ? `?${search}` : location.pathname);
}

function restoreFilters() {
  const query = new URLSearchParams(location.search);
  for (const key of ["name", "type", "status", "folder"]) {
    const value = query.get(key);
    const control = filters.elements[key];
    if (value === null || !control) continue;
    if (control.tagName === "SELECT" && ![...control.options].some((o) => o.value === value)) continue;
    control.value = value;
  }
}

filters.addEventListener("input", applyFilters);
filters.addEventListener("change", applyFilters);
filters.addEventListener("submit", (event) => event.preventDefault());
restoreFilters();
applyFilters();

// Folders: new ("+"), rename, delete.

const folderDialog = document.getElementById("folder-dialog");
const folderForm = document.getElementById("folder-form");
const folderError = document.getElementById("folder-error");
let renaming = null; // the folder being renamed, or null for a new one
let renamingOrg = null;

function openFolderDialog(current, organization) {
  renaming = current;
  renamingOrg = organization;
  folderDialog.querySelector("h2").textContent = current ? `Rename folder “${current}”` : "New folder";
  folderForm.elements.name.value = current || "";
  if (folderForm.elements.organization) {
    folderForm.elements.organization.value = organization || folderForm.elements.organization.value;
    folderForm.elements.organization.closest(".field").hidden = Boolean(current);
  }
  showError(folderError, "");
  folderDialog.showModal();
  folderForm.elements.name.focus();
}

document.getElementById("new-folder")?.addEventListener("click", () => openFolderDialog(null, null));

folderForm?.addEventListener("submit", async (event) => {
  event.preventDefault();
  const name = folderForm.elements.name.value.trim();
  if (!name) {
    showError(folderError, "Enter a folder name.");
    folderForm.elements.name.focus();
    return;
  }
  const body = { name };
  if (folderForm.elements.organization && !renaming) body.organization = folderForm.elements.organization.value;
  try {
    if (renaming) {
      await api("PATCH", folderPath(renaming, renamingOrg), body);
      reloadSaying(`Folder “${renaming}” renamed to “${name}”.`);
    } else {
      await api("POST", "/api/v1/folders", body);
      reloadSaying(`Folder “${name}” created.`);
    }
  } catch (err) {
    showError(folderError, err.message);
  }
});

// A confirmation dialog that names what it is about; `action` runs when confirmed.

const confirmDialog = document.getElementById("confirm-dialog");
const confirmForm = document.getElementById("confirm-form");
const confirmError = document.getElementById("confirm-error");
let confirmed = null;

function confirmThen(title, text, button, action) {
  confirmDialog.querySelector("#confirm-title").textContent = title;
  confirmDialog.querySelector("#confirm-text").textContent = text;
  confirmDialog.querySelector("#confirm-ok").textContent = button;
  showError(confirmError, "");
  confirmed = action;
  confirmDialog.showModal();
  confirmDialog.querySelector("[data-close]").focus();
}

confirmForm?.addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!confirmed) return;
  try {
    await confirmed();
  } catch (err) {
    showError(confirmError, err.message);
  }
});

// Run Now, with an optional past period.

const runDialog = document.getElementById("run-dialog");
const runForm = document.getElementById("run-form");
const runError = document.getElementById("run-error");
let runRow = null;

function openRunDialog(row) {
  runRow = row;
  runDialog.querySelector("#run-title").textContent = `Run Now: ${row.dataset.name}`;
  runDialog.querySelector("#run-text").textContent = `Builds and delivers “${row.dataset.name}” now, outside its schedule.`;
  showError(runError, "");
  runDialog.showModal();
  runForm.querySelector("button[type=submit]").focus();
}

runForm?.addEventListener("submit", async (event) => {
  event.preventDefault();
  const start = document.getElementById("run-start").value;
  const end = document.getElementById("run-end").value;
  if (Boolean(start) !== Boolean(end)) {
    showError(runError, "Choose both the period start and the period end, or neither.");
    return;
  }
  const body = start ? { period_start: start, period_end: end } : {};
  const button = runForm.querySelector("button[type=submit]");
  button.disabled = true;
  showError(runError, "");
  try {
    await api("POST", `${reportPath(runRow.dataset.id)}/run-now`, body);
    reloadSaying(`“${runRow.dataset.name}” is running now; its Audit Log shows how it went.`);
  } catch (err) {
    showError(runError, err.message);
    button.disabled = false;
  }
});

// Moving a report into a folder: by drag and drop, or with the row's "Move to folder" control.

async function moveReport(row, folder) {
  const name = row.dataset.name;
  if ((row.dataset.folder || "") === (folder || "")) return;
  try {
    await api("POST", `${reportPath(row.dataset.id)}/move`, { folder: folder || null });
    reloadSaying(folder ? `“${name}” moved to “${folder}”.` : `“${name}” taken out of its folder.`);
  } catch (err) {
    say(`“${name}” was not moved: ${err.message}`, "error");
  }
}

table.addEventListener("dragstart", (event) => {
  const row = event.target.closest?.("tr.report[draggable=true]");
  if (!row) return;
  event.dataTransfer.setData(DRAG_TYPE, row.dataset.id);
  event.dataTransfer.setData("text/plain", row.dataset.name);
  event.dataTransfer.effectAllowed = "move";
  row.classList.add("dragging");
});

table.addEventListener("dragend", (event) => {
  event.target.closest?.("tr.report")?.classList.remove("dragging");
  for (const group of table.querySelectorAll("tbody.drop-target")) group.classList.remove("drop-target");
});

function dropGroup(event) {
  const group = event.target.closest?.("tbody.droppable");
  return group && event.dataTransfer.types.includes(DRAG_TYPE) ? group : null;
}

table.addEventListener("dragover", (event) => {
  const group = dropGroup(event);
  if (!group) return;
  event.preventDefault();
  event.dataTransfer.dropEffect = "move";
  for (const other of table.querySelectorAll("tbody.drop-target")) {
    if (other !== group) other.classList.remove("drop-target");
  }
  group.classList.add("drop-target");
});

table.addEventListener("drop", (event) => {
  const group = dropGroup(event);
  if (!group) return;
  event.preventDefault();
  group.classList.remove("drop-target");
  const row = document.getElementById(`row-${event.dataTransfer.getData(DRAG_TYPE)}`);
  if (!row) return;
  if (group.dataset.org && group.dataset.org !== row.dataset.org) {
    say("A report can only go into a folder of its own organization.", "error");
    return;
  }
  moveReport(row, group.dataset.folder);
});

// Row and folder buttons.

table.addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-action]");
  if (!button) return;
  const row = button.closest("tr.report");
  const group = button.closest("tbody");
  const action = button.dataset.action;
  if (action === "rename-folder") {
    openFolderDialog(group.dataset.folder, group.dataset.org);
  } else if (action === "delete-folder") {
    const folder = group.dataset.folder;
    const organization = group.dataset.org;
    confirmThen(`Delete folder “${folder}”?`, `The folder “${folder}” is removed; it must be empty.`, "Delete folder", async () => {
      await api("DELETE", folderPath(folder, organization));
      reloadSaying(`Folder “${folder}” deleted.`);
    });
  } else if (action === "delete") {
    const name = row.dataset.name;
    confirmThen(
      `Delete “${name}”?`,
      `“${name}” and its schedule are removed; its run history stays readable in the audit log.`,
      "Delete",
      async () => {
        await api("DELETE", reportPath(row.dataset.id));
        reloadSaying(`“${name}” deleted.`);
      },
    );
  } else if (action === "pause" || action === "resume") {
    button.disabled = true;
    try {
      await api("POST", `${reportPath(row.dataset.id)}/${action}`);
      reloadSaying(`“${row.dataset.name}” ${action === "pause" ? "paused" : "resumed"}.`);
    } catch (err) {
      say(err.message, "error");
      button.disabled = false;
    }
  } else if (action === "run-now") {
    openRunDialog(row);
  } else if (action === "move") {
    moveReport(row, row.querySelector(".move select").value);
  }
});
