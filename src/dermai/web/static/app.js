// DermAI demo page: send one photo to /api/predict and show the answer. No frameworks, no
// third-party requests; the photo goes only to this server.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const main = document.querySelector("main");
  const maxBytes = Number(main.dataset.maxBytes);
  const maxSize = main.dataset.maxSize;
  let previewUrl = null;
  let busy = false;

  function show(el, on) { el.hidden = !on; }

  function setError(message) {
    const text = message ? message.charAt(0).toUpperCase() + message.slice(1) : "";
    $("error").textContent = text;
    show($("error"), Boolean(message));
  }

  function setStatus(message) {
    $("status").textContent = message || "";
    show($("status"), Boolean(message));
  }

  // Never show a flat 100% or 0%: a model's confidence is not certainty.
  function percent(p) {
    const v = 100 * p;
    if (v >= 99.5) return ">99%";
    if (v < 0.1) return "<0.1%";
    return (v >= 10 ? v.toFixed(0) : v.toFixed(1)) + "%";
  }

  function render(data) {
    const list = $("predictions");
    list.replaceChildren();
    // The out-of-distribution guard tripped: say so and show no probabilities.
    const refused = Boolean(data.ood && data.ood.in_distribution === false);
    $("ood").textContent = refused ? data.message : "";
    show($("ood"), refused);
    show($("predictions"), !refused);
    show($("answers-title"), !refused);
    for (const p of data.predictions) {
      const li = document.createElement("li");
      li.className = "prediction";
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = p.label;
      const code = document.createElement("span");
      code.className = "code";
      code.textContent = p.code;
      const value = document.createElement("span");
      value.className = "value";
      value.textContent = percent(p.probability);
      const bar = document.createElement("span");
      bar.className = "bar";
      const fill = document.createElement("span");
      fill.style.width = Math.max(1, Math.round(100 * p.probability)) + "%";
      bar.appendChild(fill);
      li.append(name, code, value, bar);
      list.appendChild(li);
    }
    if (data.gradcam) {
      $("cam").src = data.gradcam.image;
      $("cam-caption").textContent = "Grad-CAM for \u201c" + data.gradcam.label + "\u201d";
    }
    show($("cam-figure"), Boolean(data.gradcam));
    $("cam-note").textContent = data.gradcam_note || "";
    show($("result"), true);
  }

  async function analyse(file) {
    if (busy) return;
    setError("");
    if (!file) return;
    if (file.size === 0) { setError("The file is empty."); return; }
    if (file.size > maxBytes) {
      setError("The photo is too large: the limit is " + maxSize + ".");
      return;
    }
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = URL.createObjectURL(file);
    $("preview").src = previewUrl;
    show($("result"), false);
    busy = true;
    setStatus("Analysing\u2026");
    const body = new FormData();
    body.append("file", file, file.name || "photo");
    try {
      // The optional patient metadata (a model trained with it): any field left unknown is
      // not sent, and the model treats it as unknown.
      const query = new URLSearchParams();
      for (const el of document.querySelectorAll("#metadata [data-field]")) {
        if (el.value !== "") query.append(el.dataset.field, el.value);
      }
      const url = "/api/predict" + (query.toString() ? "?" + query.toString() : "");
      const resp = await fetch(url, { method: "POST", body: body });
      let data = null;
      try { data = await resp.json(); } catch (_) { data = null; }
      if (!resp.ok) {
        setError((data && data.error) || ("The server refused the photo (HTTP " + resp.status + ")."));
      } else {
        render(data);
      }
    } catch (_) {
      setError("Could not reach the DermAI server. Is it still running?");
    } finally {
      busy = false;
      setStatus("");
    }
  }

  // Example images: fetched from this server, then analysed like a chosen photo.
  for (const button of document.querySelectorAll("button.example")) {
    button.addEventListener("click", async () => {
      try {
        const resp = await fetch(button.dataset.src);
        const blob = await resp.blob();
        analyse(new File([blob], button.dataset.src.split("/").pop(), { type: blob.type }));
      } catch (_) {
        setError("Could not load the example image.");
      }
    });
  }

  for (const id of ["file-take", "file-choose"]) {
    $(id).addEventListener("change", (ev) => {
      const file = ev.target.files && ev.target.files[0];
      analyse(file);
      ev.target.value = "";  // choosing the same file again still triggers a change
    });
  }
})();
