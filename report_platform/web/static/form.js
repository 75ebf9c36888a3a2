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
  const workspace = byId("f-workspace").value;
  const organization = scopeOrganization();
  for (const id of ["f-workflows", "f-campaigns", "f-core-campaigns", "f-engage-campaigns"]) {
    limitOptions(byId(id), (o) => o.dataset.workspace === workspace);
  }
  for (const select of form.querySelectorAll("select[data-connections]")) {
    limitOptions(select, (o) => !o.value || o.dataset.orgs.split(" ").includes(organization));
  }
  limitOptions(byId("f-folder"), (o) => !o.value || o.dataset.orgs === organization);
  syncDestinations(organization);
}

// Destinations: a list of 1 to `maxDestinations` fieldsets, each with its own type and fields.
// Ids are `d<index>-...` and error paths `destinations[<index>]...`; both follow the position.

const destinationList = byId("destination-list");
const destinationTemplate = byId("destination-template");
const maxDestinations = Number(form.dataset.maxDestinations) || 10;
const testOrgs = (form.dataset.testOrgs || "").split(" ").filter(Boolean);
const RENUMBERED = ["id", "for", "aria-describedby", "data-error-for", "data-field", "data-chips"];

function destinationBlocks() {
  return [...destinationList.querySelectorAll(":scope > [data-destination]")];
}

function renumber(block, index) {
  const elements = [block, ...block.querySelectorAll("*")];
  for (const element of elements) {
    for (const name of RENUMBERED) {
      const value = element.getAttribute(name);
      if (value === null) continue;
      const next = value
        .replace(/\bd(\d+|__i__)-/g, `d${index}-`)
        .replace(/destinations\[(\d+|__i__)\]/g, `destinations[${index}]`);
      if (next !== value) element.setAttribute(name, next);
    }
  }
  block.querySelector("[data-number]").textContent = String(index + 1);
  const remove = block.querySelector("[data-remove-destination]");
  remove.setAttribute("aria-label", `Remove destination ${index + 1}`);
}

function syncDestinations(organization) {
  const blocks = destinationBlocks();
  blocks.forEach((block, index) => {
    const type = block.querySelector("[data-destination-type]").value;
    for (const group of block.querySelectorAll("[data-when-dest]")) {
      group.hidden = !group.dataset.whenDest.split(" ").includes(type);
    }
    const links = block.querySelector("[data-large-files]");
    block.querySelector("[data-when-large-files]").hidden = !links.checked;
    const sse = block.querySelector("[data-field$='.server_side_encryption']");
    block.querySelector("[data-when-sse]").hidden = sse.value !== "aws:kms";
    block.querySelector("[data-remove-destination]").hidden = blocks.length === 1;
    renumber(block, index);
  });
  byId("add-destination").disabled = blocks.length >= maxDestinations;
  // An organisation with one SMTP connection is not asked to choose: its name is shown instead.
  for (const select of form.querySelectorAll("select[data-single-as-text]")) {
    const usable = [...select.options].filter((o) => !o.disabled && o.value);
    const only = usable.length === 1 && select.value === usable[0].value;
    select.hidden = only;
    const text = select.parentElement.querySelector(".only-connection");
    text.hidden = !only;
    text.textContent = only ? `${select.value} (your organization's SMTP connection)` : "";
  }
  for (const button of form.querySelectorAll(".test-connection")) {
    button.hidden = !testOrgs.includes(organization);
  }
}

function addDestination() {
  if (destinationBlocks().length >= maxDestinations) return;
  const block = destinationTemplate.content.firstElementChild.cloneNode(true);
  destinationList.append(block);
  sync();
  block.querySelector("[data-destination-type]").focus();
  changed(null);
}

function removeDestination(block) {
  const blocks = destinationBlocks();
  if (blocks.length <= 1) return;
  const index = blocks.indexOf(block);
  block.remove();
  // Paths after it move up by one: what was touched there is forgotten rather than misplaced.
  for (const path of [...touched]) if (path.startsWith("destinations[")) touched.delete(path);
  sync();
  const rest = destinationBlocks();
  rest[Math.min(index, rest.length - 1)].querySelector("[data-destination-type]").focus();
  changed(null);
}

byId("add-destination").addEventListener("click", addDestination);
destinationList.addEventListener("click", (event) => {
  const remove = event.target.closest("[data-remove-destination]");
  if (remove) removeDestination(remove.closest("[data-destination]"));
});

// Several armored keys pasted into one box are sent as one entry each; text that is not inside a
// block is sent as it is, so the server names what is wrong with it.
const ARMOR = /-----BEGIN PGP [A-Z ]+-----[\s\S]*?-----END PGP [A-Z ]+-----/g;

function keysOf(textarea) {
  const value = textarea.value;
  const blocks = value.match(ARMOR) || [];
  const rest = value.replace(ARMOR, "").trim();
  const keys = blocks.map((block) => `${block.trim()}\n`);
  if (rest) keys.push(rest);
  return keys;
}

// Test connection: the API probes the connection (and the folder or bucket a destination names);
// each step is listed in the live region beside the button.

async function testConnection(button) {
  const block = button.closest("[data-destination]");
  const field = button.closest(".field");
  const select = field.querySelector("select");
  const result = field.querySelector(".test-result");
  const kind = button.dataset.testKind;
  const body = { kind, organization: scopeOrganization() };
  if (kind === "sftp") body.remote_dir = block.querySelector("[data-field$='.remote_dir']").value.trim() || null;
  if (kind === "s3") {
    body.bucket = block.querySelector("[data-field$='].bucket']").value.trim() || null;
    body.prefix = block.querySelector("[data-field$='].prefix']").value.trim();
  }
  if (!select.value) {
    result.textContent = "Choose a connection first.";
    return;
  }
  button.disabled = true;
  result.replaceChildren();
  result.textContent = `Testing ${select.value}…`;
  try {
    const answer = await api("POST", `/api/v1/connections/${encodeURIComponent(select.value)}/test`, body);
    const list = document.createElement("ul");
    list.className = "steps";
    for (const step of answer.steps || []) {
      const item = document.createElement("li");
      item.className = step.ok ? "step-ok" : "step-failed";
      item.textContent = `${step.ok ? "✓" : "✗"} ${step.step}: ${step.detail}`;
      list.append(item);
    }
    const verdict = document.createElement("p");
    verdict.textContent = answer.ok ? `${answer.connection}: every check passed.` : `${answer.connection}: a check failed.`;
    result.replaceChildren(verdict, list);
  } catch (err) {
    const problems = err instanceof ApiError && err.errors.length ? err.errors.map(messageText) : [err.message];
    result.textContent = `The test could not run: ${problems.join("; ")}`;
  } finally {
    button.disabled = false;
  }
}

form.addEventListener("click", (event) => {
  const button = event.target.closest(".test-connection");
  if (button) testConnection(button);
});

// A result is about the connection and place it was run with: it goes when they change.
const TESTED = /\.(type|connection|remote_dir|bucket|prefix)$/;
form.addEventListener("change", (event) => {
  const block = event.target.closest("[data-destination]");
  if (!block || !TESTED.test(event.target.dataset.field || "")) return;
  for (const result of block.querySelectorAll(".test-result")) result.replaceChildren();
});

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

// Delegated, so the chips of a destination added later work too.
form.addEventListener("keydown", (event) => {
  const box = event.target.closest("[data-chips]");
  if (!box || event.target.tagName !== "INPUT") return;
  const input = event.target;
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
form.addEventListener("focusout", (event) => {
  const box = event.target.closest("[data-chips]");
  if (box && event.target.tagName === "INPUT" && takeTyped(event.target)) changed(box.dataset.chips);
});
form.addEventListener("click", (event) => {
  const remove = event.target.closest(".chip-remove");
  if (!remove) return;
  const box = remove.closest("[data-chips]");
  remove.closest(".chip").remove();
  box.querySelector("input").focus();
  changed(box.dataset.chips);
});

// The definition the form describes, as the API takes it. Fields the panel does not show (e.g. a
// destination's large-file settings) are kept from the stored definition.

function firstDestination(body) {
  return (Array.isArray(body.destinations) ? body.destinations[0] : body.destination) || {};
}

/** What one destination fieldset says, as the API takes it: only the fields of its type. */
function destinationOf(block) {
  const field = (suffix) => block.querySelector(`[data-field$="${suffix}"]`);
  const value = (suffix) => field(suffix).value.trim();
  const path = (suffix) => field(suffix).dataset.field;
  const shown = block.querySelector(`[data-when-dest="${block.querySelector("[data-destination-type]").value}"]`);
  const type = block.querySelector("[data-destination-type]").value;
  const destination = { type };
  const connection = shown.querySelector("select[data-connections]").value;
  if (type === "email") {
    destination.to = recipients(path("].to"));
    destination.cc = recipients(path("].cc"));
    destination.bcc = recipients(path("].bcc"));
    destination.subject_template = value("].subject_template");
    const body = field("].body_template").value;
    if (body.trim()) destination.body_template = body;
    if (connection) destination.connection = connection;
    if (block.querySelector("[data-large-files]").checked) {
      destination.large_files = {
        connection: field(".large_files.connection").value,
        bucket: value(".large_files.bucket"),
        prefix: value(".large_files.prefix"),
        expires: value(".large_files.expires"),
      };
    }
    return destination;
  }
  destination.connection = connection;
  if (type === "sftp") {
    destination.remote_dir = value(".remote_dir");
    if (field(".create_dirs").checked) destination.create_dirs = true;
  } else {
    destination.bucket = value("].bucket");
    destination.prefix = value("].prefix");
    const sse = field(".server_side_encryption").value;
    if (sse) destination.server_side_encryption = sse;
    if (sse === "aws:kms" && value(".kms_key_id")) destination.kms_key_id = value(".kms_key_id");
  }
  if (field(".manifest").checked) destination.manifest = true;
  const keys = keysOf(block.querySelector("[data-keys]"));
  if (keys.length) destination.encrypt_to = keys;
  return destination;
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
  const destinations = destinationBlocks().map(destinationOf);
  // A report keeps its own form: `destination:` while it has one, `destinations:` when it has
  // several (or was written as a list of one).
  const writtenAsList = Array.isArray(stored.destinations) && stored.destinations.length === 1;
  if (destinations.length > 1 || writtenAsList) {
    d.destinations = destinations;
    delete d.destination;
  } else {
    d.destination = destinations[0];
    delete d.destinations;
  }
  const notify = recipients("notify_on_failure");
  if (notify.length) d.notify_on_failure = notify;
  else delete d.notify_on_failure;
  const pause = text("f-pause-after");
  // Left out at the default, as a definition that never wrote it; kept when it was written.
  if (pause === "5" && !("pause_after_failures" in stored)) delete d.pause_after_failures;
  else d.pause_after_failures = /^\d+$/.test(pause) ? Number(pause) : pause;
  // CSV is the default: left unset, so a definition saved before formats existed stays as it was.
  const format = byId("f-format").value;
  if (d.type !== "billing" && format !== "csv") d.format = format;
  else delete d.format;
  d.filename_pattern = text("f-pattern");
  d.send_when_empty = byId("f-empty").checked;
  return d;
}

// Messages beside their fields: an error's `field` path names the input; others go to the top.

// The panel's destination fields are always `destinations[i]...`: a report with one destination
// is answered about `destination...`, which is the first.
function panelPath(path) {
  return (path || "").replace(/^destination(?=$|[.[])/, "destinations[0]");
}

function errorSlot(path) {
  let current = panelPath(path);
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
