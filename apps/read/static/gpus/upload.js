/* Upload form: POST the file to the upload API with fetch(), then poll the job until the
 * workers stored every chunk (or it failed). Fires "telemetry:uploaded" on document with
 * the job when it is done. Every server string is shown with textContent. */
(function () {
  "use strict";
  var form = document.getElementById("upload-form");
  if (!form) return;
  var box = document.getElementById("upload-status");
  var bar = document.getElementById("upload-progress");
  var text = document.getElementById("upload-message");
  var errors = document.getElementById("upload-errors");
  var button = form.querySelector("button[type=submit]");
  var POLL_MS = 500;

  function show(state, message, fraction) {
    box.hidden = false;
    box.dataset.state = state;
    text.textContent = message;
    if (fraction === null) bar.removeAttribute("value");
    else bar.value = fraction;
  }

  function listErrors(list) {
    errors.replaceChildren();
    (list || []).forEach(function (e) {
      var li = document.createElement("li");
      li.textContent = (e.line ? "line " + e.line + ": " : "") + (e.message || String(e));
      errors.appendChild(li);
    });
  }

  function describe(body) {
    if (body && typeof body.detail === "string") return body.detail;
    if (body && typeof body === "object") {
      return Object.keys(body).map(function (k) { return k + ": " + [].concat(body[k]).join(" "); }).join("; ");
    }
    return "the server refused the upload";
  }

  function progress(job) {
    var total = job.chunks_expected || 0;
    var done = job.chunks_done || 0;
    var counts = job.rows_accepted + " rows accepted" +
      (job.rows_rejected ? ", " + job.rows_rejected + " rejected" : "");
    if (job.state === "failed") {
      show("failed", "Job " + job.id + " failed: " + (job.error || "unknown error") + " (" + counts + ")", 0);
      return true;
    }
    if (job.state === "done") {
      show("done", "Done: " + counts + ", " + job.samples + " samples stored (job " + job.id + ").", 1);
      document.dispatchEvent(new CustomEvent("telemetry:uploaded", { detail: job }));
      return true;
    }
    show("running", "Storing: " + done + " of " + total + " chunks (" + counts + ")", total ? done / total : null);
    return false;
  }

  function poll(url) {
    fetch(url, { headers: { Accept: "application/json" } })
      .then(function (r) { return r.json().then(function (b) { return { ok: r.ok, body: b }; }); })
      .then(function (res) {
        if (!res.ok) throw new Error(describe(res.body));
        listErrors(res.body.errors);
        if (!progress(res.body)) setTimeout(function () { poll(url); }, POLL_MS);
        else button.disabled = false;
      })
      .catch(function (err) {
        show("running", "Waiting for the job (" + err.message + ")…", null);
        setTimeout(function () { poll(url); }, POLL_MS * 4);
      });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var data = new FormData(form);
    if (!data.get("cluster")) data.delete("cluster");
    button.disabled = true;
    listErrors([]);
    show("running", "Uploading and parsing…", null);
    var csrf = form.querySelector("input[name=csrfmiddlewaretoken]");
    var headers = { Accept: "application/json" };
    if (csrf) headers["X-CSRFToken"] = csrf.value;  // a logged-in session must prove the form is ours
    fetch(form.action, { method: "POST", body: data, headers: headers, credentials: "same-origin" })
      .then(function (r) {
        return r.json().catch(function () { return {}; }).then(function (b) {
          return { status: r.status, location: r.headers.get("Location"), body: b };
        });
      })
      .then(function (res) {
        if (res.status !== 202) {
          listErrors(res.body.errors);
          show("failed", "Upload refused (" + res.status + "): " + describe(res.body), 0);
          button.disabled = false;
          return;
        }
        listErrors(res.body.errors);
        if (!progress(res.body)) poll(res.location || "/api/v1/ingest/jobs/" + encodeURIComponent(res.body.id));
        else button.disabled = false;
      })
      .catch(function (err) {
        show("failed", "Upload failed: " + err.message, 0);
        button.disabled = false;
      });
  });
})();
