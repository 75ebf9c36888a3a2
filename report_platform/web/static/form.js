// The "Add Scheduled Report" panel (and editing one): sections that follow the choices made,
// recipients as chips, validation beside each field, a live preview of the next runs, Save.
import { ApiError, api, formatTime, goSaying } from "./common.js";

const form = document.getElementById("report-form");
const reportId = form.dataset.reportId;
const stored = JSON.parse(document.getElementById("stored-definition").textContent);
const defaultPatterns = JSON.parse(document.getElementById("default-patterns").textContent);
const formatExtensions = JSON.parse(document.getElementById("format-extensions").textContent);
const summary = document.getElementById("form-errors");
const byId = (id) => document.getElementById(id);
const DEBOUNCE_MS = 400;

// Which sections show: they follow the type, scope, frequency, period kind and destination.

function isShown(element) {
  const parent = element.parentElement;
  return !parent || !parent.closest("[hidden]");
}

function scopeIsOrganization() {
  return byId("f-type").value === "billing" && byId("f-scope-organization").checked;
}

function scopeOrganization() {
  if (scopeIsOrganization()) return byId("f-organization").value;
  const option = byId("f-workspace").selectedOptions[0];
  return option ? option.dataset.org : "";
}

function showWhen(attribute, value) {
  for (const element of form.querySelectorAll(`[data-when-${attribute}]`)) {
    element.hidden = !element.getAttribute(`data-when-${attribute}`).split(" ").includes(value);
  }
}

function limitOptions(select, keep) {
  let selectedHidden = false;
  for (const option of select.options) {
    const ok = keep(option);
    option.hidden = !ok;
    option.disabled = !ok;
    if (!ok && option.selected) {
      option.selected = false;
      selectedHidden = true;
    }
  }
  if (selectedHidden && !select.multiple) {
    const first = [...select.options].find((o) => !o.disabled);
    if (first) first.selected = true;
  }
}

function sync() {
  const type = byId("f-type").value;
  showWhen("type", type);
  showWhen("scope", scopeIsOrganization() ? "organization" : "workspace");
  showWhen("frequency", byId("f-frequency").value);
  showWhen("period", byId("f-period").value);
  showWhen("destination", byId("f-destination").value);
  const workspace = byId("f-workspace").value;
  const organization = scopeOrganization();
  for (const id of ["f-workflows", "f-campaigns", "f-core-campaigns", "f-engage-campaigns"]) {
    limitOptions(byId(id), (o) => o.dataset.workspace === workspace);
  }
  for (const select of form.querySelectorAll("select[data-connections]")) {
    limitOptions(select, (o) => !o.value || o.dataset.orgs.split(" ").includes(organization));
  }
  limitOptions(byId("f-folder"), (o) => !o.value || o.dataset.orgs === organization);
}

// A new type keeps the file name the person wrote, with the type's own extension.

let previousType = byId("f-type").value;

function extensionOf(pattern) {
  const dot = pattern.lastIndexOf(".");
  return dot < 0 ? "" : pattern.slice(dot);
}

// The extension a pattern ends with: the longest known one (".csv.gz" before ".csv").
function knownExtension(pattern) {
  const known = [...Object.values(formatExtensions), extensionOf(defaultPatterns.billing)];
  return known.sort((a, b) => b.length - a.length).find((ext) => pattern.endsWith(ext));
}

/** The extension the chosen type and format write: billing is always a workbook. */
function wantedExtension() {
  const type = byId("f-type").value;
  return type === "billing" ? extensionOf(defaultPatterns.billing) : formatExtensions[byId("f-format").value];
}

function applyExtension() {
  const input = byId("f-pattern");
  const pattern = input.value.trim();
  const wanted = wantedExtension();
  if (!pattern || pattern === defaultPatterns[previousType]) {
    const base = defaultPatterns[byId("f-type").value];
    input.value = base.slice(0, -extensionOf(base).length) + wanted;
  } else {
    const current = knownExtension(pattern);
    if (current && current !== wanted) input.value = pattern.slice(0, -current.length) + wanted;
  }
  previousType = byId("f-type").value;
}

byId("f-type").addEventListener("change", applyExtension);
byId("f-format").addEventListener("change", applyExtension);

// Recipients: an address becomes a chip when Enter (or a comma) is pressed, or on leaving the field.

function splitAddresses(text) {
  return text.split(/[\s,;]+/).filter(Boolean);
}

/** The addresses of a To/CC/BCC field: its chips, and what is typed but not yet a chip. */
function recipients(path) {
  const box = form.querySelector(`[data-chips="${path}"]`);
  const chips = [...box.querySelectorAll(".chip")].map((chip) => chip.dataset.value);
  return [...chips, ...splitAddresses(box.querySelector("input").value)];
}

function addChip(box, address) {
  const list = box.querySelector(".chip-list");
  if ([...list.children].some((chip) => chip.dataset.value.toLowerCase() === address.toLowerCase())) return;
  const chip = document.createElement("li");
  chip.className = "chip";
  chip.dataset.value = address;
  const text = document.createElement("span");
  text.textContent = address;
  const remove = document.createElement("button");
  remove.type = "button";
  remove.className = "chip-remove";
  remove.setAttribute("aria-label", `Remove ${address}`);
  remove.textContent = "×";
  chip.append(text, remove);
  list.append(chip);
}

function takeTyped(input) {
  const box = input.closest("[data-chips]");
  const typed = splitAddresses(input.value);
  for (const address of typed) addChip(box, address);
  input.value = "";
  return typed.length > 0;
}

for (const box of form.querySelectorAll("[data-chips]")) {
  const input = box.querySelector("input");
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === ",") {
      event.preventDefault();
      if (takeTyped(input)) changed(box.dataset.chips);
    } else if (event.key === "Backspace" && !input.value) {
      const last = box.querySelector(".chip:last-child");
      if (last) {
        last.remove();
        changed(box.dataset.chips);
      }
    }
  });
  input.addEventListener("blur", () => {
    if (takeTyped(input)) changed(box.dataset.chips);
  });
  box.addEventListener("click", (event) => {
    const remove = event.target.closest(".chip-remove");
    if (!remove) return;
    remove.closest(".chip").remove();
    input.focus();
    changed(box.dataset.chips);
  });
}

// The definition the form describes, as the API takes it. Fields the panel does not show (e.g. a
// destination's large-file settings) are kept from the stored definition.

const several = Array.isArray(stored.destinations);

function firstDestination(body) {
  return (several ? body.destinations[0] : body.destination) || {};
}

function text(id) {
  return byId(id).value.trim();
}

function optional(target, key, value) {
  if (value) target[key] = value;
  else delete target[key];
}

function definition() {
  const d = structuredClone(stored);
  d.name = text("f-name");
  optional(d, "description", text("f-description"));
  d.type = byId("f-type").value;
  d.status = byId("f-status").value;
  d.folder = byId("f-folder").value || null;
  if (scopeIsOrganization()) {
    d.organization = byId("f-organization").value;
    delete d.workspace;
  } else {
    d.workspace = byId("f-workspace").value;
    delete d.organization;
  }
  const chosen = (id) => [...byId(id).selectedOptions].map((o) => o.value);
  // Only the stored filters of the same type are kept: each type takes its own.
  const kept = stored.type === d.type ? stored.filters || {} : {};
  if (d.type === "aegis_interaction") {
    d.filters = { ...kept, workflows: chosen("f-workflows"), include_event_details: byId("f-events").checked };
  } else if (d.type === "voice_usage") {
    d.filters = { ...kept, campaigns: chosen("f-campaigns") };
  } else if (d.type === "sms_usage") {
    d.filters = { ...kept, core_campaigns: chosen("f-core-campaigns"), engage_campaigns: chosen("f-engage-campaigns") };
  } else {
    delete d.filters;
  }
  const schedule = { timezone: text("f-timezone"), frequency: byId("f-frequency").value, time_of_day: text("f-time") };
  if (schedule.frequency === "weekly") schedule.day_of_week = byId("f-weekday").value;
  if (schedule.frequency === "monthly") {
    const day = text("f-monthday");
    schedule.day_of_month = /^\d+$/.test(day) ? Number(day) : day;
  }
  d.schedule = schedule;
  const period = { kind: byId("f-period").value };
  if (period.kind === "rolling_window") period.lookback = text("f-lookback");
  if (period.kind === "custom_range") {
    period.start = byId("f-start").value;
    period.end = byId("f-end").value;
  }
  d.period = period;
  const type = byId("f-destination").value;
  // With several destinations the panel edits the first; the others are kept as they are.
  const first = several ? stored.destinations[0] : stored.destination;
  const destination = first && first.type === type ? structuredClone(first) : {};
  destination.type = type;
  if (type === "email") {
    destination.to = recipients("destination.to");
    destination.cc = recipients("destination.cc");
    destination.bcc = recipients("destination.bcc");
    destination.subject_template = text("f-subject");
    optional(destination, "body_template", byId("f-body").value.trim() ? byId("f-body").value : "");
    optional(destination, "connection", byId("f-smtp").value);
  } else if (type === "sftp") {
    destination.connection = byId("f-sftp").value;
    destination.remote_dir = text("f-remote-dir");
    if (byId("f-sftp-manifest").checked) destination.manifest = true;
    else delete destination.manifest;
  } else {
    destination.connection = byId("f-s3").value;
    destination.bucket = text("f-bucket");
    destination.prefix = text("f-prefix");
    if (byId("f-s3-manifest").checked) destination.manifest = true;
    else delete destination.manifest;
  }
  if (several) {
    d.destinations = [destination, ...structuredClone(stored.destinations.slice(1))];
    delete d.destination;
  } else {
    d.destination = destination;
  }
  // CSV is the default: left unset, so a definition saved before formats existed stays as it was.
  const format = byId("f-format").value;
  if (d.type !== "billing" && format !== "csv") d.format = format;
  else delete d.format;
  d.filename_pattern = text("f-pattern");
  d.send_when_empty = byId("f-empty").checked;
  return d;
}

// Messages beside their fields: an error's `field` path names the input; others go to the top.

function errorSlot(path) {
  // The first of several destinations is the one the panel's destination fields edit.
  let current = several ? (path || "").replace(/^destinations\[0\]/, "destination") : path || "";
  while (current) {
    const slots = form.querySelectorAll(`[data-error-for="${CSS.escape(current)}"]`);
    const slot = [...slots].find(isShown);
    if (slot) return slot;
    const withoutIndex = current.replace(/\[\d+\]$/, "");
    if (withoutIndex !== current) {
      current = withoutIndex;
      continue;
    }
    const dot = current.lastIndexOf(".");
    if (dot < 0) break;
    current = current.slice(0, dot);
  }
  return null;
}

function messageText(error) {
  const message = String(error.message || "");
  const field = error.field || "";
  return field && message.startsWith(`${field}: `) ? message.slice(field.length + 2) : message;
}

function clearErrors() {
  for (const slot of form.querySelectorAll("[data-error-for]")) {
    slot.textContent = "";
    slot.hidden = true;
  }
  for (const input of form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
  summary.hidden = true;
  summary.querySelector("ul").replaceChildren();
}

function inputOf(slot) {
  return slot.closest(".field")?.querySelector("input:not([type=radio]), select, textarea");
}

/** Show `errors`; only those of fields in `onlyFor` (a set of paths) unless it is null. */
function showErrors(errors, onlyFor) {
  clearErrors();
  const unplaced = [];
  for (const error of errors) {
    const slot = errorSlot(error.field);
    if (onlyFor && !(slot && onlyFor.has(slot.dataset.errorFor))) continue;
    if (!slot) {
      unplaced.push(error.field ? `${error.field}: ${messageText(error)}` : messageText(error));
      continue;
    }
    slot.textContent = slot.textContent ? `${slot.textContent}; ${messageText(error)}` : messageText(error);
    slot.hidden = false;
    inputOf(slot)?.setAttribute("aria-invalid", "true");
  }
  if (unplaced.length) {
    const list = summary.querySelector("ul");
    for (const line of unplaced) {
      const item = document.createElement("li");
      item.textContent = line;
      list.append(item);
    }
    summary.hidden = false;
  }
}

function errorsOf(err) {
  if (err instanceof ApiError && err.errors.length) return err.errors;
  return [{ field: null, message: err.message }];
}

// Live checks while the person types: validation, then the preview of the next five runs.

const touched = new Set();
let submitted = false;
let timer = null;
let sequence = 0;

function pathOf(element) {
  if (!element) return null;
  const chips = element.closest("[data-chips]");
  if (chips) return chips.dataset.chips;
  const field = element.closest(".field")?.querySelector("[data-error-for]");
  return field ? field.dataset.errorFor : element.dataset.field || null;
}

function changed(path) {
  if (path) touched.add(path);
  clearTimeout(timer);
  timer = setTimeout(check, DEBOUNCE_MS);
}

form.addEventListener("input", (event) => changed(pathOf(event.target)));
form.addEventListener("change", (event) => {
  sync();
  changed(pathOf(event.target));
});

async function check() {
  const mine = ++sequence;
  const body = definition();
  try {
    await api("POST", "/api/v1/reports/validate", body);
    if (mine !== sequence) return;
    clearErrors();
  } catch (err) {
    if (mine !== sequence) return;
    showErrors(errorsOf(err), submitted ? null : touched);
    previewUnavailable(err instanceof ApiError && err.status === 422 ? "incomplete" : err.message);
    return;
  }
  await preview(body, mine);
}

const previewTable = byId("preview-table");
const previewStatus = byId("preview-status");

function previewUnavailable(reason) {
  previewTable.hidden = true;
  previewStatus.textContent =
    reason === "incomplete" ? "The next five runs appear here once the report is complete and valid." : reason;
}

function cell(row, value, title) {
  const td = document.createElement("td");
  td.textContent = value ?? "";
  if (title) td.title = title;
  row.append(td);
}

function when(value, timeZone) {
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? String(value ?? "") : formatTime(date, timeZone);
}

function runsOf(answer) {
  if (Array.isArray(answer)) return answer;
  for (const key of ["runs", "next_runs", "preview"]) {
    if (answer && Array.isArray(answer[key])) return answer[key];
  }
  return [];
}

async function preview(body, mine) {
  let answer;
  try {
    answer = await api("POST", "/api/v1/reports/preview", body);
  } catch (err) {
    if (mine === sequence) previewUnavailable(err.status === 422 ? "incomplete" : err.message);
    return;
  }
  if (mine !== sequence) return;
  const timeZone = answer.timezone || body.schedule.timezone;
  const rows = runsOf(answer)
    .slice(0, 5)
    .map((run) => {
      const row = document.createElement("tr");
      const at = run.scheduled_at || run.at;
      cell(row, when(at, timeZone), at);
      cell(row, when(at));
      const start = run.period_start || run.period?.start;
      const end = run.period_end || run.period?.end;
      cell(row, start ? `${when(start, timeZone)} – ${when(end, timeZone)}` : "", start ? `[${start}, ${end})` : "");
      cell(row, run.filename || run.file_name || "");
      const subject = document.createElement("td");
      subject.dataset.whenDestination = "email";
      subject.hidden = firstDestination(body).type !== "email";
      subject.textContent = run.subject || "";
      row.append(subject);
      return row;
    });
  previewTable.tBodies[0].replaceChildren(...rows);
  previewTable.tHead.querySelector("[data-when-destination]").hidden = firstDestination(body).type !== "email";
  previewTable.hidden = rows.length === 0;
  previewStatus.textContent = rows.length
    ? `Times in ${timeZone} and in your timezone (${Intl.DateTimeFormat().resolvedOptions().timeZone}).`
    : "This report has no upcoming runs.";
}

// Save: create (POST) or replace (PUT); refusals are shown beside their fields.

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  submitted = true;
  clearTimeout(timer);
  sequence += 1; // answers of checks still under way are stale now
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  for (const input of form.querySelectorAll("[data-chips] input")) takeTyped(input);
  const body = definition();
  try {
    if (reportId) {
      await api("PUT", `/api/v1/reports/${encodeURIComponent(reportId)}`, body);
      goSaying("/", `“${body.name}” saved.`);
    } else {
      await api("POST", "/api/v1/reports", body);
      goSaying("/", `“${body.name}” created.`);
    }
  } catch (err) {
    showErrors(errorsOf(err), null);
    const first = form.querySelector("[aria-invalid=true]");
    if (!summary.hidden) summary.focus();
    else if (first) first.focus();
    button.disabled = false;
  }
});

sync();
if (reportId) check();
