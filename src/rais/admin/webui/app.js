// The rais dashboard: one page, no build step. Everything it shows comes from the
// agent's API (GET /v1/stream, read with fetch() so it can carry the bearer token);
// the page itself holds no data.
"use strict";

(() => {
  const TOKEN_KEY = "rais.token";
  const FEED_MAX = 200;
  const BACKOFF_MIN = 500;
  const BACKOFF_MAX = 10000;
  const SILENCE_MS = 40000; // the server sends something at least every 15 s

  const $ = (id) => document.getElementById(id);
  let token = sessionStorage.getItem(TOKEN_KEY) || "";
  let status = null;
  let statusAt = 0; // performance.now() when `status` arrived
  let lastSeq = 0;
  let controller = null;
  let backoff = BACKOFF_MIN;
  let retryTimer = 0;
  const groupViews = new Map();

  // ------------------------------------------------------------ helpers

  function h(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (key === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(key, value);
    }
    for (const child of children) if (child != null) node.append(child);
    return node;
  }

  function setText(node, text) {
    const value = String(text);
    if (node.textContent !== value) node.textContent = value;
  }

  function setClass(node, name) {
    if (node.className !== name) node.className = name;
  }

  function yn(value) {
    return value ? "yes" : "no";
  }

  function seconds(value) {
    if (value < 1) return `${Math.round(value * 1000)} ms`;
    if (value < 10) return `${value.toFixed(1)} s`;
    if (value < 120) return `${Math.round(value)} s`;
    if (value < 7200) return `${Math.round(value / 60)} min`;
    return `${Math.round(value / 3600)} h`;
  }

  function elapsed() {
    return (performance.now() - statusAt) / 1000;
  }

  // A keyed list: rows are kept (and updated in place) while their key stays.
  function syncRows(parent, items, key, make, update) {
    const old = new Map();
    for (const node of Array.from(parent.children)) old.set(node.dataset.key, node);
    items.forEach((item, i) => {
      const k = key(item);
      let node = old.get(k);
      if (node) old.delete(k);
      else {
        node = make(item);
        node.dataset.key = k;
      }
      update(node, item);
      if (parent.children[i] !== node) parent.insertBefore(node, parent.children[i] || null);
    });
    for (const node of old.values()) node.remove();
  }

  // Rebuild a block only when its data changed.
  function renderIfChanged(node, value, build) {
    const text = JSON.stringify(value);
    if (node.dataset.json === text) return;
    node.dataset.json = text;
    node.replaceChildren(...build(value));
  }

  let noticeTimer = 0;
  function notify(text, isError) {
    clearTimeout(noticeTimer);
    setText($("notice-text"), text);
    $("notice").classList.toggle("error", !!isError);
    $("notice").hidden = false;
    if (!isError) {
      noticeTimer = setTimeout(() => {
        $("notice").hidden = true;
      }, 5000);
    }
  }

  function setConn(state, text) {
    $("conn").dataset.state = state;
    setText($("conn-text"), text);
    $("main").classList.toggle("stale", state !== "live");
  }

  // ------------------------------------------------------------ the API

  function headers(extra) {
    const out = Object.assign({}, extra);
    if (token) out.Authorization = `Bearer ${token}`;
    return out;
  }

  async function errorText(resp) {
    try {
      const body = await resp.json();
      if (body && body.error) return String(body.error);
    } catch (_) {
      // not JSON: fall through
    }
    return `HTTP ${resp.status} ${resp.statusText}`.trim();
  }

  async function post(path, label, button) {
    if (button) button.disabled = true;
    try {
      const resp = await fetch(path, { method: "POST", headers: headers(), cache: "no-store" });
      if (resp.status === 401) {
        askToken("The token was refused.");
        return;
      }
      if (!resp.ok) {
        notify(`${label} failed: ${await errorText(resp)}`, true);
        return;
      }
      notify(`${label}: done`, false);
    } catch (err) {
      notify(`${label} failed: ${err.message || err}`, true);
    } finally {
      if (button) button.disabled = false;
    }
  }

  // ------------------------------------------------------------ token

  function askToken(message) {
    stop();
    token = "";
    sessionStorage.removeItem(TOKEN_KEY);
    $("main").hidden = true;
    $("signout").hidden = true;
    $("login").hidden = false;
    $("login-error").hidden = !message;
    setText($("login-error"), message || "");
    setConn("signin", "token needed");
    $("token").focus();
  }

  function signIn(event) {
    event.preventDefault();
    const value = $("token").value.trim();
    if (!value) return;
    token = value;
    sessionStorage.setItem(TOKEN_KEY, token);
    $("token").value = "";
    $("login").hidden = true;
    connect();
  }

  // ------------------------------------------------------------ the stream

  function stop() {
    clearTimeout(retryTimer);
    if (controller) controller.abort();
    controller = null;
  }

  function retry() {
    const delay = backoff * (0.75 + Math.random() / 2);
    backoff = Math.min(backoff * 2, BACKOFF_MAX);
    setConn("offline", `reconnecting in ${seconds(delay / 1000)}`);
    retryTimer = setTimeout(connect, delay);
  }

  async function connect() {
    stop();
    const ctl = new AbortController();
    controller = ctl;
    setConn("connecting", "connecting…");
    let silence = 0;
    const heard = () => {
      clearTimeout(silence);
      silence = setTimeout(() => ctl.abort(), SILENCE_MS);
    };
    let refused = false;
    try {
      const resp = await fetch(`/v1/stream?since=${lastSeq}`, {
        headers: headers({ Accept: "text/event-stream" }),
        signal: ctl.signal,
        cache: "no-store",
      });
      if (resp.status === 401) {
        refused = true;
        askToken(token ? "That token was refused." : "");
        return;
      }
      if (!resp.ok || !resp.body) throw new Error(await errorText(resp));
      heard();
      const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        heard();
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          dispatch(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
        }
      }
    } catch (err) {
      if (ctl.signal.aborted && controller !== ctl) return; // replaced or stopped
    } finally {
      clearTimeout(silence);
    }
    if (controller === ctl && !refused) {
      controller = null;
      retry();
    }
  }

  function dispatch(block) {
    let kind = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (!line || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const name = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (name === "event") kind = value;
      else if (name === "data") data.push(value);
    }
    if (!data.length) return;
    const payload = JSON.parse(data.join("\n"));
    if (kind === "status") onStatus(payload);
    else if (kind === "event") onEvent(payload);
  }

  function onStatus(next) {
    status = next;
    statusAt = performance.now();
    backoff = BACKOFF_MIN;
    $("main").hidden = false;
    $("signout").hidden = !token;
    setConn("live", "live");
    render();
  }

  // ------------------------------------------------------------ rendering

  function render() {
    if (!status) return;
    const parts = [`host ${status.host || "?"}`];
    if (status.version) parts.push(`rais ${status.version}`);
    if (status.epoch != null) parts.push(`epoch ${status.epoch}`);
    setText($("who"), parts.join(" · "));
    // ?group=NAME: the page of one group (each group's title links to its own)
    const only = new URLSearchParams(window.location.search).get("group");
    const groups = (status.groups || []).filter((g) => !only || g.name === only);
    const box = $("groups");
    if (!groups.length) {
      const none = only ? `No group ${only} on this host.` : "This host is in no group.";
      box.replaceChildren(h("section", { class: "card", text: none }));
      groupViews.clear();
      return;
    }
    if (!groupViews.size) box.replaceChildren();
    const seen = new Set();
    groups.forEach((g, i) => {
      let view = groupViews.get(g.name);
      if (!view) {
        view = makeGroup(g.name);
        groupViews.set(g.name, view);
      }
      seen.add(g.name);
      updateGroup(view, g);
      if (box.children[i] !== view.root) box.insertBefore(view.root, box.children[i] || null);
    });
    for (const [name, view] of groupViews) {
      if (!seen.has(name)) {
        view.root.remove();
        groupViews.delete(name);
      }
    }
  }

  function table(caption, columns, kind) {
    const body = h("tbody");
    const head = h("tr", {}, ...columns.map((c) => h("th", { scope: "col", text: c })));
    const node = h("table", { class: `grid ${kind}` }, h("caption", { text: caption }), h("thead", {}, head), body);
    return { node: h("div", { class: "scroll" }, node), body };
  }

  function cells(tr, labels) {
    for (const label of labels) tr.append(h("td", { "data-label": label }));
    return tr;
  }

  function makeGroup(name) {
    const root = h("section", { class: "group card", dataset: { group: name } });
    const title = h("h2", {}, h("a", { href: `?group=${encodeURIComponent(name)}`, text: name }));
    const badges = h("p", { class: "badges" });
    const quiesce = h("button", { type: "button", class: "quiesce" });
    quiesce.addEventListener("click", () => {
      const verb = quiesce.dataset.action;
      post(`/v1/${verb}?group=${encodeURIComponent(name)}`, `${verb} ${name}`, quiesce);
    });
    const leader = h("p", { class: "leader" });
    const tests = h("ul", { class: "tests" });
    const dns = h("div", { class: "dns" });
    const hosts = table("Hosts", HOST_COLUMNS, "hosts");
    const addresses = table("Addresses", ADDRESS_COLUMNS, "addresses");
    const extra = h("div", { class: "extra muted" });
    root.append(
      h("div", { class: "group-head" }, title, quiesce),
      leader,
      badges,
      tests,
      hosts.node,
      addresses.node,
      dns,
      extra,
    );
    return { root, badges, quiesce, leader, tests, dns, hosts: hosts.body, addresses: addresses.body, extra };
  }

  function badge(text, kind) {
    return h("span", { class: `badge ${kind}`, text });
  }

  function updateGroup(view, g) {
    const who = g.leader ? `${g.leader}${g.is_leader ? " (this host)" : ""}` : "none yet";
    setText(view.leader, `leader ${who}`);
    const link = g.link && g.link.tracked ? g.link : null;
    const linkState = link ? link.state : "untracked";
    renderIfChanged(view.badges, [g.settled, g.ok, g.quiesced, linkState], () => [
      g.settled ? badge("settled", "good") : badge("settling", "warn"),
      g.ok ? badge("OK", "good") : badge("not OK", "bad"),
      g.quiesced ? badge("quiesced", "warn") : null,
      linkState === "down" ? badge("link down", "bad") : null,
      linkState === "holding" ? badge("link hold-down", "warn") : null,
    ].filter(Boolean));
    view.quiesce.dataset.action = g.quiesced ? "unquiesce" : "quiesce";
    setText(view.quiesce, g.quiesced ? "Unquiesce" : "Quiesce");
    const linkKey = link ? [link.state, link.reason, link.hold_left_s == null] : null;
    const guard = g.guard && g.guard.mode !== "none" ? guardText(g.guard, g.is_leader) : null;
    renderIfChanged(view.tests, [g.tests || [], linkKey, guard], () => [
      ...(g.tests || []).map((t) => {
        const state = t.ok === true ? "passing" : t.ok === false ? "FAILING" : "pending";
        const why = t.reason && t.ok !== true ? ` (${t.reason})` : "";
        return h("li", { class: `test ${state.toLowerCase()}`, text: `test ${t.name}: ${state}${why}` });
      }),
      link ? linkItem(link) : null,
      guard ? h("li", { class: `test guard ${guard.kind}`, text: guard.text }) : null,
    ].filter(Boolean));
    const scale = g.load_scale || 1000;
    const hosts = g.hosts || [];
    syncRows(view.hosts, hosts, (x) => x.id, () => cells(h("tr"), HOST_COLUMNS), (tr, x) =>
      updateHost(tr, x, g, scale),
    );
    const movable = hosts.filter((x) => x.live && !x.observer).map((x) => x.id);
    syncRows(view.addresses, g.addresses || [], (a) => a.address, makeAddress, (tr, a) =>
      updateAddress(tr, a, movable),
    );
    renderIfChanged(view.dns, g.dns || null, renderDns);
    const notes = [];
    if (g.wire_version != null) {
      const common = (g.common_features || []).join(", ") || "none";
      notes.push(`sends wire v${g.wire_version}, common features: ${common}`);
    }
    if ((g.expired || []).length) notes.push(`expired: ${g.expired.join(", ")}`);
    const dropped = Object.entries(g.dropped || {}).filter(([, v]) => v);
    if (dropped.length) notes.push(`dropped datagrams: ${dropped.map(([k, v]) => `${k} ${v}`).join(", ")}`);
    setText(view.extra, notes.join(" · "));
  }

  // The guard in a few words, as `rais status` says it (rais.admin.status.guard_line);
  // the lease left is not shown here: it changes on every status.
  function guardText(guard, leads) {
    const quorate = guard.quorate ? "quorate" : "NOT QUORATE";
    let text;
    if (!leads) {
      text = `guard ${guard.mode}, leader ${quorate}`;
    } else if (guard.mode === "majority") {
      text = `guard majority ${guard.votes}/${(guard.voters || []).length} ${quorate}, ${guard.needed} needed`;
    } else {
      const parts = [guard.key_held ? `etcd key held, token ${guard.token}` : "etcd key NOT HELD"];
      if (guard.arbiter === "unreachable") parts.push("etcd UNREACHABLE");
      if (guard.holding) parts.push("holding on, nothing new assigned");
      else if (!guard.key_held) parts.push(quorate);
      text = `guard ${parts.join(", ")}`;
    }
    const kind = guard.holding ? "pending" : guard.quorate ? "passing" : "failing";
    return { text, kind };
  }

  function linkItem(link) {
    const state = { up: "up", down: "DOWN", holding: "hold-down" }[link.state] || link.state;
    const why = link.reason && link.state !== "up" ? ` (${link.reason})` : "";
    const kind = link.state === "up" ? "passing" : link.state === "down" ? "failing" : "pending";
    return h("li", { class: `test link ${kind}`, text: `link ${link.interface}: ${state}${why}` });
  }

  const HOST_COLUMNS = ["Host", "Live", "OK", "Quiesced", "Role", "Utilization", "Last heard", "Wire"];

  function updateHost(tr, x, g, scale) {
    const td = tr.children;
    const tags = [];
    if (x.id === g.leader) tags.push("leader");
    if (x.id === g.host) tags.push("this host");
    if (x.leaving) tags.push("leaving");
    renderIfChanged(td[0], [x.id, tags, x.preferred], () => [
      h("span", { class: "mono", text: x.id }),
      ...tags.map((t) => badge(t, "info")),
      x.preferred ? h("span", { class: "sub mono", text: `preferred ${x.preferred}` }) : null,
    ].filter(Boolean));
    setClass(tr, x.live ? "" : "dead");
    setText(td[1], yn(x.live));
    setClass(td[1], x.live ? "good" : "bad");
    setText(td[2], yn(x.ok));
    setClass(td[2], x.ok ? "good" : "bad");
    setText(td[3], yn(x.quiesced));
    setClass(td[3], x.quiesced ? "warn" : "");
    setText(td[4], x.observer ? "observer" : x.spare ? "spare" : "active");
    renderIfChanged(td[5], [x.utilization, x.load, x.capacity, scale], () =>
      x.utilization == null
        ? [h("span", { class: "muted", text: "—" })]
        : [
            h("meter", { min: "0", max: String(scale), low: String(scale * 0.6), high: String(scale * 0.8), value: String(x.utilization) }),
            h("span", { class: "util", text: ` ${x.utilization} (${x.load}/${x.capacity})` }),
          ],
    );
    const pause = x.paused_s == null ? "" : `, paused (${seconds(Math.max(0, x.paused_s - elapsed()))} left)`;
    if (x.id === g.host) setText(td[6], `this host${pause}`);
    else if (x.last_heard_s == null) setText(td[6], "never");
    else setText(td[6], `${seconds(x.last_heard_s + elapsed())} ago${pause}`);
    const versions = (x.wire_versions || [1]).map((v) => `v${v}`).join(" ");
    const features = (x.features || []).join(", ");
    setText(td[7], features ? `${versions} (${features})` : versions);
    td[7].title = "wire versions it speaks (features it announces)";
  }

  const ADDRESS_COLUMNS = ["Address", "State", "Holder", "Preferred host", "Orphan", "Actions"];

  function makeAddress(a) {
    const tr = cells(h("tr"), ADDRESS_COLUMNS);
    const bare = a.address.split("/")[0];
    const failback = h("button", { type: "button", class: "failback", text: "Failback" });
    failback.addEventListener("click", () =>
      post(`/v1/failback?address=${encodeURIComponent(bare)}`, `failback ${bare}`, failback),
    );
    const select = h("select", { class: "move-to", "aria-label": `move ${bare} to` });
    const move = h("button", { type: "button", class: "move", text: "Move", disabled: "" });
    select.addEventListener("change", () => {
      move.disabled = !select.value;
    });
    move.addEventListener("click", () => {
      const target = select.value;
      if (!target) return;
      select.value = "";
      post(
        `/v1/move?address=${encodeURIComponent(bare)}&host=${encodeURIComponent(target)}`,
        `move ${bare} to ${target}`,
        move,
      ).then(() => {
        move.disabled = !select.value;
      });
    });
    tr.children[5].append(h("div", { class: "actions" }, failback, select, move));
    return tr;
  }

  function updateAddress(tr, a, movable) {
    const td = tr.children;
    // An address set shows every address of it, its key first.
    setText(td[0], a.set ? a.set.join(" + ") : a.address);
    setClass(td[0], "mono wrap");
    setText(td[1], a.state);
    setClass(td[1], `state ${a.state}`);
    setText(td[2], (a.holders || []).join(", ") || "—");
    setClass(td[2], "mono");
    setText(td[3], a.preferred || "—");
    setClass(td[3], "mono");
    if (a.orphan_s == null) {
      setText(td[4], "—");
      setClass(td[4], "");
    } else {
      setText(td[4], `expires in ${seconds(Math.max(0, a.orphan_s - elapsed()))}`);
      setClass(td[4], "warn");
    }
    const select = td[5].querySelector("select");
    const wanted = movable.join(" ");
    if (select.dataset.hosts !== wanted) {
      const chosen = select.value;
      select.dataset.hosts = wanted;
      select.replaceChildren(
        h("option", { value: "", text: "move to…" }),
        ...movable.map((id) => h("option", { value: id, text: id })),
      );
      select.value = movable.includes(chosen) ? chosen : "";
      td[5].querySelector("button.move").disabled = !select.value;
    }
  }

  function renderDns(dns) {
    if (!dns) return [];
    const answer = (dns.addresses || []).join(", ") || "no addresses";
    const out = [
      h("h3", { text: "DNS" }),
      h("p", {}, h("span", { class: "mono", text: dns.name }), ` → ${answer}`),
    ];
    if ((dns.shed || []).length) out.push(h("p", { class: "warn", text: `shed (too busy): ${dns.shed.join(", ")}` }));
    const pubs = Object.entries(dns.publishers || {});
    if (pubs.length) {
      out.push(
        h("ul", { class: "publishers" }, ...pubs.map(([kind, p]) => {
          const state = p.active === false ? "standby" : p.ok === false ? "failing" : "ok";
          let text = `${kind} (${p.publisher || "?"}): ${state}`;
          if (p.failed) text += `, ${p.failed} failed`;
          if (p.last_error) text += ` — ${p.last_error}`;
          return h("li", { class: state === "failing" ? "bad" : "", text });
        })),
      );
    }
    return out;
  }

  // ------------------------------------------------------------ the feed

  function onEvent(ev) {
    if (typeof ev.seq === "number") lastSeq = ev.seq;
    const when = new Date(ev.time * 1000);
    const stamp = when.toLocaleTimeString([], { hour12: false });
    const item = h(
      "li",
      { class: `ev kind-${String(ev.kind).replace(/[^a-z0-9-]/gi, "")}`, dataset: { seq: String(ev.seq) } },
      h("time", { datetime: when.toISOString(), text: stamp }),
      h("span", { class: "ev-group", text: ev.group }),
      h("span", { class: "ev-kind", text: ev.kind }),
      ev.address ? h("span", { class: "mono", text: ev.address }) : null,
      h("span", { class: "ev-host mono", text: `on ${ev.host}` }),
      ev.reason ? h("span", { class: "ev-reason", text: ev.reason }) : null,
    );
    const feed = $("feed");
    feed.prepend(item);
    while (feed.children.length > FEED_MAX) feed.lastElementChild.remove();
    $("feed-empty").hidden = true;
  }

  // ------------------------------------------------------------ start

  document.addEventListener("DOMContentLoaded", () => {
    $("login").addEventListener("submit", signIn);
    $("signout").addEventListener("click", () => askToken(""));
    $("notice-close").addEventListener("click", () => {
      $("notice").hidden = true;
    });
    setInterval(render, 1000); // countdowns and "last heard" between updates
    connect();
  });
})();
