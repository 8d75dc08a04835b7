// The task page follows its task through the status event stream: each
// event that names a version the page does not show makes the page fetch
// itself again and put the new rendering in place, without a reload. The
// page works without this script; the server renders all of it.
"use strict";
(function () {
  const task = document.getElementById("task");
  if (!task || task.hasAttribute("data-ended") || !window.EventSource) {
    return;
  }
  let shown = task.dataset.version;
  let wanted = shown;
  let fetching = false;
  const stream = new EventSource(task.dataset.statusUrl);
  stream.addEventListener("status", function (e) {
    wanted = e.lastEventId;
    refresh();
  });

  async function refresh() {
    if (fetching || !newer(wanted, shown)) {
      return;
    }
    fetching = true;
    try {
      const resp = await fetch(window.location.href, { cache: "no-store", headers: { Accept: "text/html" } });
      if (!resp.ok) {
        return;
      }
      const next = new DOMParser().parseFromString(await resp.text(), "text/html").getElementById("task");
      if (!next) {
        return;
      }
      const before = statusText();
      swap("live", next);
      if (statusText() !== before) {
        document.getElementById("announce").textContent = "The task is now " + statusText() + ".";
      }
      if (!document.getElementById("actions").contains(document.activeElement)) {
        swap("actions", next); // not under the keyboard's focus
      }
      shown = next.dataset.version;
      task.dataset.version = shown;
      if (parseInt(shown, 10) >= parseInt(wanted, 10)) {
        // Caught up, even if another server judged abandonment otherwise.
        wanted = shown;
      }
      if (next.hasAttribute("data-ended")) {
        task.setAttribute("data-ended", "");
        stream.close();
      }
    } finally {
      fetching = false;
    }
    refresh(); // an event that came while fetching
  }

  // newer reports whether the event id a names a later document than b:
  // a higher version, or the same one judged abandoned ("7a").
  function newer(a, b) {
    const va = parseInt(a, 10);
    const vb = parseInt(b, 10);
    return va > vb || (va === vb && a.endsWith("a") && !b.endsWith("a"));
  }

  // statusText returns the task's status as the page shows it, such as
  // "running abandoned".
  function statusText() {
    return [...document.querySelectorAll("#live .summary .status")].map((s) => s.textContent).join(" ");
  }

  function swap(id, next) {
    const from = document.getElementById(id);
    const to = next.querySelector("#" + id);
    if (from && to) {
      from.replaceWith(document.adoptNode(to));
    }
  }
})();
