// The live console (templates/console.html): events over the websocket, the panels fetched
// again when one says something changed, and approve/reject through the API. A file of its
// own, not inline, so the Content-Security-Policy can refuse every inline script.
(function () {
  const last = JSON.parse(document.getElementById("last-sequence").textContent);
  const csrf = JSON.parse(document.getElementById("csrf-token").textContent);
  const labels = JSON.parse(document.getElementById("event-labels").textContent);
  // As governance.rules.labels.event_label: a code not listed reads as words, never raw.
  const label = (action) => labels[action] || (action.charAt(0).toUpperCase() + action.slice(1)).replace(/[._]/g, " ");
  const list = document.getElementById("events");
  const status = document.getElementById("status");
  const panels = document.getElementById("panels");
  const MAX_EVENTS = 300;

  // Events can arrive out of order (each process publishes after its own commit), and
  // sequences have no gaps: keep every one, in order, and ask again for any still missing.
  const seen = new Set();
  let contiguous = last;  // every event up to here is shown
  let gapTimer = null;
  let socket = null;
  function show(event) {
    if (event.sequence <= contiguous || seen.has(event.sequence)) return;
    seen.add(event.sequence);  // holds only the events beyond a gap
    while (seen.has(contiguous + 1)) { contiguous += 1; seen.delete(contiguous); }
    const item = document.createElement("li");
    item.dataset.action = event.action;
    item.dataset.sequence = event.sequence;
    item.value = event.sequence;
    const time = document.createElement("time");
    time.dateTime = event.created_at;
    // The one format people read everywhere: 2026-12-07 05:26:27 UTC.
    time.textContent = new Date(event.created_at).toISOString().slice(0, 19).replace("T", " ") + " UTC ";
    const what = document.createElement("strong");
    what.textContent = label(event.action);
    item.append(time, what, ` · ${event.actor}: ${event.summary}`);
    if (event.ticket_id) item.title = `ticket ${event.ticket_id} · ${event.action}`;
    // Newest first: before the first shown event older than this one.
    const later = Array.from(list.children).find((other) => Number(other.dataset.sequence) < event.sequence);
    list.insertBefore(item, later || null);
    while (list.children.length > MAX_EVENTS) list.lastElementChild.remove();
    clearTimeout(gapTimer);
    if (seen.size) gapTimer = setTimeout(fillGap, 1000);  // a missing one: ask for it
  }
  function fillGap() {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({after: contiguous}));
  }

  // The panels are fetched again (not patched) when an event says something changed:
  // one request at a time, and one more if events arrived during it.
  let fetching = false, stale = false, timer = null;
  async function refresh() {
    if (fetching) { stale = true; return; }
    fetching = true;
    try {
      const response = await fetch(panels.dataset.url, {headers: {"X-Requested-With": "fetch"}});
      if (response.redirected) {  // signed out meanwhile: keep what is shown, say so
        status.textContent = "signed out: reload to sign in"; status.className = "down";
      } else if (response.ok) {
        const html = await response.text();
        const opened = new Set(Array.from(panels.querySelectorAll("tr[data-approval] details[open]"),
                                          (details) => details.closest("tr").dataset.approval));
        panels.innerHTML = html;
        opened.forEach((id) => panels.querySelector(`tr[data-approval="${id}"] details`)?.setAttribute("open", ""));
      }
    } catch (error) { /* the next event or tick tries again */ }
    fetching = false;
    if (stale) { stale = false; refresh(); }
  }
  function soon() { clearTimeout(timer); timer = setTimeout(refresh, 50); }
  setInterval(refresh, 15000);  // readings arrive without audit events: keep them current

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(`${scheme}://${location.host}/ws/console`);
    socket.onopen = () => {
      status.textContent = "live"; status.className = "live";
      socket.send(JSON.stringify({after: contiguous}));
      soon();  // anything missed while away
    };
    socket.onmessage = (message) => {
      // Events come several to a frame: a storm is a few frames, and one panel refresh.
      const data = JSON.parse(message.data);
      const events = data.events || (data.event ? [data.event] : []);
      if (events.length) { events.forEach(show); soon(); }
    };
    socket.onclose = () => { status.textContent = "reconnecting"; status.className = "down"; setTimeout(connect, 1000); };
  }
  connect();

  const dialog = document.getElementById("verdict-dialog");
  const note = document.getElementById("verdict-note");
  const error = document.getElementById("verdict-error");
  const submit = document.getElementById("verdict-submit");
  let pending = null;
  panels.addEventListener("click", (click) => {
    const button = click.target.closest("button[data-verdict]");
    if (!button) return;
    const rejecting = button.dataset.verdict === "reject";
    pending = {id: button.dataset.id, verdict: button.dataset.verdict};
    // A copy: the panel behind may be refreshed while the dialog is open.
    const context = document.getElementById(`verdict-context-${pending.id}`);
    document.getElementById("verdict-context").replaceChildren(context.content.cloneNode(true));
    document.getElementById("verdict-title").textContent = rejecting ? "Reject this change" : "Approve this change";
    document.getElementById("verdict-note-label").textContent = rejecting ? "Why reject? (required)" : "Note for the record (optional)";
    note.required = rejecting;
    note.value = "";
    error.textContent = "";
    submit.textContent = rejecting ? "Reject" : "Approve";
    submit.disabled = false;
    dialog.showModal();
    note.focus();
  });
  document.getElementById("verdict-cancel").addEventListener("click", () => dialog.close());
  document.getElementById("verdict-form").addEventListener("submit", async (submission) => {
    submission.preventDefault();
    if (note.required && !note.value.trim()) { error.textContent = "A rejection needs a reason."; return; }
    submit.disabled = true;
    try {
      const response = await fetch(`/api/v1/approvals/${pending.id}/${pending.verdict}`, {
        method: "POST",
        headers: {"Content-Type": "application/json", "X-CSRFToken": csrf},
        body: JSON.stringify({comment: note.value}),
      });
      const body = await response.json();
      if (response.ok) { dialog.close(); refresh(); return; }
      error.textContent = (body.error && body.error.message) || `Refused (HTTP ${response.status}).`;
    } catch (failure) {
      error.textContent = "Could not reach Warden; nothing was recorded. Try again.";
    }
    submit.disabled = false;
  });
  // The controls (pause, resume, roll back, decide differently): one dialog, filled from the
  // clicked button's <template> (what it will change), posting the form with the CSRF token.
  // The server answers 400 naming the field, 403 or 409 with why; all shown here.
  const controlDialog = document.getElementById("control-dialog");
  const controlForm = document.getElementById("control-form");
  const controlFields = document.getElementById("control-fields");
  const controlError = document.getElementById("control-error");
  const controlSubmit = document.getElementById("control-submit");
  const controlPreview = document.getElementById("control-preview");
  const reason = document.getElementById("control-reason");
  const SUBMIT_LABELS = {pause: "Pause", resume: "Resume", rollback: "Roll back", override: "Decide"};
  let control = null;

  function cloned(id) {
    const template = id && document.getElementById(id);
    return template ? template.content.cloneNode(true) : document.createDocumentFragment();
  }
  function pauseForm() {
    const fields = controlFields.querySelector(".fields");
    const data = new URLSearchParams();
    for (const name of ["scope", "category", "host"]) data.set(name, fields.querySelector(`[name=${name}]`).value);
    const local = fields.querySelector("[name=ends_at_local]").value;
    if (local) data.set("ends_at", new Date(local).toISOString());  // the browser's zone, sent as UTC
    return data;
  }
  let previewAsked = 0;  // answers can come back out of order: only the last question's shows
  async function showPausePreview() {
    const fields = controlFields.querySelector(".fields");
    const scope = fields.querySelector("[name=scope]").value;
    fields.querySelectorAll("[data-for-scope]").forEach((label) => { label.hidden = label.dataset.forScope !== scope; });
    const asked = ++previewAsked;
    let text = "";
    try {
      const response = await fetch(`${fields.dataset.previewUrl}?${pauseForm()}`);
      const body = await response.json();
      text = body.preview || (body.error && body.error.message) || "";
    } catch (failure) { text = ""; }
    if (asked === previewAsked) controlPreview.textContent = text;
  }
  controlFields.addEventListener("change", () => { if (control && control.kind === "pause") showPausePreview(); });
  panels.addEventListener("click", (click) => {
    const button = click.target.closest("button[data-control]");
    if (!button) return;
    control = {kind: button.dataset.control, url: button.dataset.url};
    const context = button.dataset.context || `${control.kind}-context`;
    document.getElementById("control-context").replaceChildren(cloned(context));
    controlFields.replaceChildren(cloned(`${control.kind}-fields`));
    controlPreview.hidden = control.kind !== "pause";
    controlPreview.textContent = "";
    previewAsked++;  // a preview still on its way belongs to the last dialog
    reason.value = "";
    controlError.textContent = "";
    controlSubmit.textContent = SUBMIT_LABELS[control.kind] || "Confirm";
    controlSubmit.disabled = false;
    controlDialog.showModal();
    if (control.kind === "pause") showPausePreview();
    reason.focus();
  });
  document.getElementById("control-cancel").addEventListener("click", () => controlDialog.close());
  controlDialog.addEventListener("close", () => controlFields.removeEventListener("change", showPausePreview));
  controlForm.addEventListener("submit", async (submission) => {
    submission.preventDefault();
    controlError.textContent = "";
    const data = control.kind === "pause" ? pauseForm() : new URLSearchParams();
    data.set("reason", reason.value);
    if (control.kind === "override") {
      const pick = document.querySelector("#control-context input[name=pick]:checked");
      if (!pick) { controlError.textContent = "Choose what to do."; return; }
      if (pick.value.startsWith("runbook:")) { data.set("decide", "runbook"); data.set("runbook", pick.value.slice(8)); }
      else data.set("decide", pick.value);
    }
    if (!reason.value.trim()) { controlError.textContent = "reason: say why; it goes into the audit trail."; return; }
    controlSubmit.disabled = true;
    try {
      const response = await fetch(control.url, {
        method: "POST",
        headers: {"X-CSRFToken": csrf, "X-Requested-With": "fetch"},
        body: data,
      });
      const body = await response.json();
      if (response.ok) { controlDialog.close(); refresh(); controlSubmit.disabled = false; return; }
      const fields = (body.error && body.error.fields) || {};
      const named = Object.entries(fields).map(([name, messages]) => `${name}: ${messages.join(" ")}`);
      controlError.textContent = named.length ? named.join("; ") : ((body.error && body.error.message) || `Refused (HTTP ${response.status}).`);
    } catch (failure) {
      controlError.textContent = "Could not reach Warden; nothing was recorded. Try again.";
    }
    controlSubmit.disabled = false;
  });
})();
