'use strict';
'require view';
'require rpc';
'require poll';
'require dom';
'require ui';

/*
 * Live state of the mesh, from one call of meshd's ubus method `status` per
 * refresh: the whole status document (`meshd status --json`), one consistent
 * snapshot. The fields read here are listed in
 * ../../../../../status-contract.json (openwrt/luci-app-meshd/), grouped by
 * the ubus method that returns each part of the document (members, routes,
 * nat, consoles = the document's `exit`): keep the two in step.
 *
 * The page is drawn by build(), a pure function of the document and of what
 * the user chose (the selected and the hovered member), into a detached tree;
 * morph() then brings the live page to that tree, touching only the text and
 * attributes that differ. Nothing is rebuilt on a refresh, so a text
 * selection, the focus and the scroll position survive it. Clicks and hovers
 * are handled once, on the view's root (the nodes say which member they are
 * with data-member, the Friends card's buttons which dialog with
 * data-action).
 *
 * The Friends card makes invites and joins meshes without a terminal: its
 * dialogs call meshd's `invite` and `join`, and a join's progress is read
 * with `invites` (the same object as the status document's `invites`).
 */

var callStatus = rpc.declare({
	object: 'meshd',
	method: 'status',
	expect: { '': {} }
});

// The names the LAN's DHCP server and /etc/ethers know the consoles by.
var callHostHints = rpc.declare({
	object: 'luci-rpc',
	method: 'getHostHints',
	expect: { '': {} }
});

// An invite for a friend's router (`meshd invite`): {"token": ...} or
// {"error": why}.
var callInvite = rpc.declare({
	object: 'meshd',
	method: 'invite',
	params: [ 'name', 'expires', 'endpoint' ],
	expect: { '': {} }
});

// Joins the mesh of the router that made `token`: {"state": "joining"} or
// {"error": why}; how it ends is in `invites`.
var callJoin = rpc.declare({
	object: 'meshd',
	method: 'join',
	params: [ 'token' ],
	expect: { '': {} }
});

// Pending invites and this router's own join.
var callInvites = rpc.declare({
	object: 'meshd',
	method: 'invites',
	expect: { invites: {} }
});

var SVG_NS = 'http://www.w3.org/2000/svg';
var REFRESH_SECONDS = 2;
// Host names are asked for again, while a console has none, at most this often.
var HINTS_SECONDS = 60;
// A join's progress is asked for this often, for at most this long (meshd
// gives up after 20 s without an answer).
var JOIN_POLL_MS = 1000, JOIN_POLLS = 30;
// A member name, as meshd takes it.
var MEMBER_NAME = /^[A-Za-z0-9_]{1,32}$/;

// The map is drawn at one user unit per pixel; below the width it needs at
// its smallest it becomes a list (text never shrinks under its CSS size).
var MAP_WIDTH_GUESS = 720, MAP_MAX_HEIGHT = 560;
var LABEL_FONT = 15, SUB_FONT = 13, NODE_R = 16, SELF_R = 19;

var CSS = [
	'.meshd-status,.meshd-dialog{--meshd-self:#1565c0;--meshd-up:#2e7d32;--meshd-transit:#9a5b00;--meshd-down:#757575;--meshd-path:#d84315;--meshd-bad:#c62828;--meshd-line:rgba(127,127,127,.4);--meshd-tint:rgba(127,127,127,.08)}',
	':root[data-darkmode="true"] .meshd-status,:root[data-darkmode="true"] .meshd-dialog{--meshd-self:#82b8f0;--meshd-up:#7cc47f;--meshd-transit:#eeb35c;--meshd-down:#a8a8a8;--meshd-path:#ff8a5c;--meshd-bad:#ff8a80}',
	'@media (prefers-color-scheme:dark){:root:not([data-darkmode="false"]) .meshd-status,:root:not([data-darkmode="false"]) .meshd-dialog{--meshd-self:#82b8f0;--meshd-up:#7cc47f;--meshd-transit:#eeb35c;--meshd-down:#a8a8a8;--meshd-path:#ff8a5c;--meshd-bad:#ff8a80}}',
	'.meshd-status small,.meshd-status .meshd-muted{font-size:max(11px,.9em)}',
	'.meshd-cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(100%,22em),1fr));gap:12px;margin:0 0 1em}',
	'.meshd-card{border:1px solid var(--meshd-line);border-radius:6px;padding:.7em .9em;background:var(--meshd-tint);min-width:0;overflow-wrap:anywhere}',
	'.meshd-card h4{margin:0 0 .2em;font-size:1.15em}',
	'.meshd-card p{margin:.45em 0}',
	'.meshd-grade{border-left:4px solid var(--meshd-down);padding-left:.6em}',
	'.meshd-grade-open{border-color:var(--meshd-up)}.meshd-grade-moderate{border-color:var(--meshd-transit)}.meshd-grade-strict{border-color:var(--meshd-path)}',
	'.meshd-friends{list-style:none;padding:0;margin:.3em 0 0;display:flex;flex-wrap:wrap;gap:.2em 1.2em}',
	'.meshd-dot{display:inline-block;width:.8em;height:.8em;border-radius:50%;margin-right:.35em;vertical-align:-.05em;background:var(--meshd-down)}',
	'.meshd-c-self{background:var(--meshd-self)}.meshd-c-up{background:var(--meshd-up)}.meshd-c-transit{background:var(--meshd-transit)}.meshd-c-down{background:var(--meshd-down)}',
	'.meshd-svg{display:block;width:100%;height:auto;margin:0 auto;overflow:visible}',
	'.meshd-svg text{fill:currentColor}.meshd-svg .meshd-label{font-size:' + LABEL_FONT + 'px;font-weight:bold}.meshd-svg .meshd-sub{font-size:' + SUB_FONT + 'px}',
	'.meshd-edge{stroke:currentColor;fill:none}.meshd-edge-direct{stroke-width:3}.meshd-edge-reported{stroke-width:2;stroke-dasharray:8 6}',
	'.meshd-pathseg{stroke:var(--meshd-path);stroke-width:9;stroke-linecap:round;opacity:.65;fill:none}',
	'.meshd-node circle{stroke:currentColor;stroke-width:1.5}',
	'.meshd-n-self{fill:var(--meshd-self)}.meshd-n-up{fill:var(--meshd-up)}.meshd-n-transit{fill:var(--meshd-transit)}.meshd-n-down{fill:var(--meshd-down)}',
	'.meshd-node{outline:none}.meshd-node:focus-visible circle{stroke:var(--meshd-path);stroke-width:4;stroke-dasharray:4 3}',
	'.meshd-node[data-member]{cursor:pointer}.meshd-node.meshd-selected circle{stroke:var(--meshd-path);stroke-width:4}.meshd-node.meshd-hover circle{stroke-width:3.5}',
	'.meshd-map-wrap.meshd-narrow .meshd-svg,.meshd-map-wrap.meshd-narrow .meshd-svg-only{display:none}.meshd-map-wrap:not(.meshd-narrow) .meshd-maplist{display:none}',
	'.meshd-maplist{list-style:none;padding:0;margin:0}.meshd-maplist li{padding:.35em .2em;border-bottom:1px solid var(--meshd-line);cursor:pointer}',
	'.meshd-maplist li.meshd-selected{outline:2px solid var(--meshd-path);outline-offset:-2px}.meshd-maplist li.meshd-hover{background:var(--meshd-tint)}',
	'.meshd-legend{list-style:none;padding:0;margin:.6em 0;display:flex;flex-wrap:wrap;gap:.3em 1.4em}',
	'.meshd-legend svg{vertical-align:middle;margin-right:.4em}',
	'.meshd-mapinfo{margin:.4em 0;min-height:1.5em}',
	'.meshd-status tr.meshd-row{cursor:pointer}',
	'.meshd-status tr.meshd-row.meshd-selected{outline:2px solid var(--meshd-path);outline-offset:-2px}',
	'.meshd-status tr.meshd-row.meshd-hover{background:var(--meshd-tint);box-shadow:inset 4px 0 var(--meshd-path)}',
	'.meshd-help{cursor:help;text-decoration:underline dotted}',
	'.meshd-status code{overflow-wrap:anywhere}',
	'.meshd-actions{display:flex;flex-wrap:wrap;gap:.5em;margin:.7em 0}',
	'.meshd-pending{list-style:none;padding:0;margin:.2em 0 0}.meshd-pending li{padding:.1em 0}',
	'.meshd-good{color:var(--meshd-up)}.meshd-bad{color:var(--meshd-bad)}',
	'.meshd-dialog{overflow-wrap:anywhere}.meshd-dialog p{margin:.6em 0}',
	'.meshd-dialog .meshd-input{width:100%;max-width:24em;box-sizing:border-box}',
	'.meshd-dialog textarea.meshd-token{display:block;width:100%;box-sizing:border-box;font-family:monospace;font-size:13px;line-height:1.4;word-break:break-all;resize:vertical;padding:6px}',
	'.meshd-msg{min-height:1.5em;margin:.6em 0}',
	'.meshd-dialog .meshd-copy{display:flex;flex-wrap:wrap;align-items:center;gap:.3em .8em;margin:.5em 0}'
].join('\n');

function fetchStatus() {
	return L.resolveDefault(callStatus(), null).then(function(doc) {
		return (doc && typeof doc == 'object' && !Array.isArray(doc)) ? doc : null;
	});
}

function fetchHints() {
	return L.resolveDefault(callHostHints(), {}).then(function(h) {
		return (h && typeof h == 'object') ? h : {};
	});
}

/* Formatting */

function isObject(v) {
	return v != null && typeof v == 'object' && !Array.isArray(v);
}

function isNumber(v) {
	return typeof v == 'number' && isFinite(v);
}

function list(v) {
	return Array.isArray(v) ? v : [];
}

function none() {
	return E('em', {}, [ '–' ]);
}

// A word with its explanation on hover (a dotted underline says there is one).
function help(text, why) {
	return E('span', { 'class': 'meshd-help', 'title': why }, [ text ]);
}

function dot(cls, why) {
	return E('span', { 'class': 'meshd-dot meshd-c-' + cls, 'title': why, 'aria-hidden': 'true' });
}

function seconds(s) {
	if (!isNumber(s))
		return null;
	if (s < 120)
		return _('%s s').format(s.toFixed(1));
	if (s < 7200)
		return _('%d min').format(Math.floor(s / 60));
	return _('%d h').format(Math.floor(s / 3600));
}

function reachedText(m) {
	var p = m.path;
	if (!isObject(p))
		return _('unreachable');
	if (p.direct)
		return _('directly');
	if (!isNumber(p.hops))
		return p.via ? _('via %s').format(p.via) : _('through other members');
	if (p.via)
		return _('via %s, %d hops').format(p.via, p.hops);
	return _('%d hops').format(p.hops);
}

var NAT_WORDS = {
	open: _('open: a public address'),
	cone: _('cone NAT'),
	forwarded: _('NAT with the mesh port forwarded'),
	symmetric: _('symmetric NAT'),
	cgnat: _('carrier-grade NAT'),
	unknown: _('not known yet')
};

// PlayStation NAT types: 1 = public address, 2 = behind a router that keeps
// one mapping per port (fine), 3 = strict (peers must relay).
function natText(nat) {
	if (!isObject(nat))
		return _('not known yet');
	var words = NAT_WORDS[nat.behaviour] || nat.behaviour || NAT_WORDS.unknown;
	if (nat.playstation)
		return _('Type %d').format(nat.playstation) + ' (' + words + ')';
	return words;
}

// Console makers: the name of the console, and how each maker words a NAT.
var MAKERS = [
	{ id: 'sony', console: 'PlayStation', nat: function(n) { return n.playstation ? _('Type %d').format(n.playstation) : null; } },
	{ id: 'microsoft', console: 'Xbox', nat: function(n) { return n.xbox || null; } },
	{ id: 'nintendo', console: 'Switch', nat: function(n) { return n['switch'] || null; } }
];

var VENDOR_NAMES = { sony: 'PlayStation', microsoft: 'Xbox', nintendo: 'Nintendo Switch' };

// What a NAT type means for a console, in a gamer's words. The Xbox grade is
// the most telling (Open, Moderate, Strict); PlayStation's Type 2 covers
// both Open and Moderate.
function natGrade(n) {
	if (!isObject(n))
		return null;
	if (n.xbox == 'Open' || n.playstation == 1)
		return 'open';
	if (n.xbox == 'Moderate')
		return 'moderate';
	if (n.xbox == 'Strict' || n.playstation == 3)
		return 'strict';
	if (n.playstation == 2)
		return 'fine';
	return null;
}

var GRADE_MEANING = {
	open: _('Open: it can host matches and join anyone\'s, voice chat included.'),
	moderate: _('Moderate: it joins most matches, but players behind a strict NAT may not reach it.'),
	strict: _('Strict: it reaches only players whose NAT is open; matchmaking and voice chat often fail.'),
	fine: _('It joins matches and reaches most players.')
};

// "PlayStation: Type 2" for its own maker; the others' words beside it.
function makerWords(n, vendor) {
	var own = null, others = [];
	MAKERS.forEach(function(mk) {
		var w = isObject(n) ? mk.nat(n) : null;
		if (!w)
			return;
		if (mk.id == vendor)
			own = _('%s: %s').format(mk.console, w);
		else
			others.push(_('%s %s').format(mk.console, w));
	});
	return { own: own, others: others };
}

function exitPhrase(exit) {
	if (!exit)
		return _('through this home\'s own internet');
	if (exit == 'this router')
		return _('through this router');
	return _('through %s\'s router').format(exit);
}

/* Topology */

function parseIPv4(text) {
	var parts = String(text).split('.');
	var n = 0;
	if (parts.length != 4)
		return null;
	for (var i = 0; i < 4; i++) {
		if (!/^\d{1,3}$/.test(parts[i]) || +parts[i] > 255)
			return null;
		n = n * 256 + (+parts[i]);
	}
	return n;
}

// The route meshd uses to reach an IPv4 address (longest prefix match).
function routeFor(routes, address) {
	var a = parseIPv4(address), best = null, bestLen = -1;
	if (a == null)
		return null;
	routes.forEach(function(r) {
		var parts = String(r.prefix || '').split('/');
		var net = parseIPv4(parts[0]), len = +parts[1];
		if (net == null || !(len >= 0 && len <= 32) || len <= bestLen)
			return;
		var size = Math.pow(2, 32 - len);
		if (Math.floor(a / size) == Math.floor(net / size)) {
			best = r;
			bestLen = len;
		}
	});
	return best;
}

// An AS path in BIRD's notation ("65002 65004 {65005 65006}") as the list of
// its AS_SEQUENCE numbers; a set or confederation segment becomes null,
// which breaks the chain (its members' order is unknown).
function asSequence(text) {
	var out = [], depth = 0;
	String(text || '').replace(/[{}()\[\]]|\d+/g, function(token) {
		if (/^\d+$/.test(token)) {
			if (depth == 0)
				out.push(+token);
		}
		else if ('{(['.indexOf(token) >= 0) {
			if (depth++ == 0)
				out.push(null);
		}
		else {
			depth--;
		}
		return token;
	});
	return out;
}

// Nodes (this router, then the members) and the tunnels between them:
// 'direct' for this router's own (a member reached directly or with BGP up),
// 'reported' for those members report: two AS numbers side by side in an AS
// path are two routers with a BGP session, hence a tunnel.
function topology(d) {
	var nodes = [], byAsn = {}, byName = {}, byId = {}, edges = {};

	nodes.push({ id: 'self', label: _('this router'), sub: d.status.overlay, asn: d.status.asn, self: true });
	d.members.forEach(function(m) {
		if (m && m.name)
			nodes.push({ id: 'm:' + m.name, label: m.name, sub: m.overlay, asn: m.asn, member: m });
	});
	nodes.forEach(function(n) {
		byId[n.id] = n;
		if (n.asn != null)
			byAsn[n.asn] = n;
		if (n.member)
			byName[n.member.name] = n;
	});

	function addEdge(a, b, kind) {
		if (!a || !b || a === b)
			return;
		var key = (a.id < b.id) ? a.id + '|' + b.id : b.id + '|' + a.id;
		if (!edges[key] || kind == 'direct')
			edges[key] = { key: key, a: a, b: b, kind: kind };
	}

	nodes.forEach(function(n) {
		var m = n.member;
		if (m && ((isObject(m.path) && m.path.direct) || (isObject(m.bgp) && m.bgp.state == 'Established')))
			addEdge(nodes[0], n, 'direct');
	});

	d.routes.forEach(function(r) {
		var paths = [ r.best ].concat(list(r.alternatives));
		paths.forEach(function(p) {
			if (!isObject(p))
				return;
			var seq = asSequence(p.as_path);
			for (var i = 0; i + 1 < seq.length; i++)
				if (seq[i] != null && seq[i + 1] != null)
					addEdge(byAsn[seq[i]], byAsn[seq[i + 1]], 'reported');
		});
	});

	return {
		nodes: nodes, byAsn: byAsn, byName: byName, byId: byId,
		edges: Object.keys(edges).sort().map(function(k) { return edges[k]; })
	};
}

// The nodes the traffic to member `name` crosses now, this router first.
function pathTo(d, topo, name) {
	var target = topo.byName[name];
	if (!target)
		return [];
	var m = target.member;
	var r = routeFor(d.routes, m.overlay);
	var seq = (r && isObject(r.best)) ? asSequence(r.best.as_path) : [];
	var ids = [ 'self' ];

	for (var i = 0; i < seq.length && ids; i++) {
		var n = (seq[i] != null) ? topo.byAsn[seq[i]] : null;
		if (!n)
			ids = null;
		else if (ids[ids.length - 1] != n.id)
			ids.push(n.id);
	}
	if (ids && ids.length > 1 && ids[ids.length - 1] == target.id)
		return ids;

	// No usable AS path: what the member entry says.
	if (!isObject(m.path))
		return [];
	ids = [ 'self' ];
	if (!m.path.direct && m.path.via && m.path.via != name && topo.byName[m.path.via])
		ids.push('m:' + m.path.via);
	ids.push(target.id);
	return ids;
}

function nodeState(n) {
	if (n.self)
		return 'self';
	var m = n.member;
	if (isObject(m.bgp) && m.bgp.state == 'Established')
		return 'up';
	if (isObject(m.path))
		return 'transit';
	return 'down';
}

var STATE_WORDS = {
	self: _('this router'),
	up: _('BGP up: a tunnel of its own'),
	transit: _('reached through other members'),
	down: _('unreachable')
};

/* Map layout: the nodes on a circle, in the order with the fewest crossing
 * tunnels (two chords of a circle cross when their ends interleave), labels
 * outside the circle, so that no tunnel and no highlighted path can cross
 * one. */

function crossings(order, edges) {
	var at = {}, count = 0;
	order.forEach(function(id, i) { at[id] = i; });
	for (var i = 0; i < edges.length; i++) {
		var a = at[edges[i].a.id], b = at[edges[i].b.id];
		if (a > b) { var t = a; a = b; b = t; }
		for (var j = i + 1; j < edges.length; j++) {
			var c = at[edges[j].a.id], e = at[edges[j].b.id];
			if (c == a || c == b || e == a || e == b)
				continue;
			if ((c > a && c < b) != (e > a && e < b))
				count++;
		}
	}
	return count;
}

function permutations(items, visit) {
	if (items.length <= 1)
		return visit(items.slice());
	for (var i = 0; i < items.length; i++) {
		var rest = items.slice(0, i).concat(items.slice(i + 1));
		permutations(rest, function(p) { visit([ items[i] ].concat(p)); });
	}
}

// This router first. The previous order is kept while no other has fewer
// crossings, so that the map does not move between refreshes.
function circleOrder(ids, edges, previous) {
	var best = ids, bestCount = crossings(ids, edges);
	if (previous && previous.length == ids.length && previous.every(function(id) { return ids.indexOf(id) >= 0; })) {
		best = previous;
		bestCount = crossings(previous, edges);
	}
	if (bestCount == 0)
		return best;
	var rest = ids.slice(1);
	if (rest.length <= 7) {
		permutations(rest, function(p) {
			var order = [ ids[0] ].concat(p), n = crossings(order, edges);
			if (n < bestCount) {
				best = order;
				bestCount = n;
			}
		});
		return best;
	}
	// Many members: swap pairs while that removes crossings.
	var improved = true;
	best = best.slice();
	while (improved && bestCount > 0) {
		improved = false;
		for (var i = 1; i < best.length; i++)
			for (var j = i + 1; j < best.length; j++) {
				var o = best.slice();
				o[i] = best[j];
				o[j] = best[i];
				var n = crossings(o, edges);
				if (n < bestCount) {
					best = o;
					bestCount = n;
					improved = true;
				}
			}
	}
	return best;
}

// A text's width in user units, on the generous side (DejaVu Sans is about
// 0.55 em per character, bold 0.62).
function textWidth(text, size, bold) {
	return String(text || '').length * size * (bold ? 0.68 : 0.62);
}

function boxesOverlap(p, q, margin) {
	return p.x < q.x + q.w + margin && q.x < p.x + p.w + margin &&
		p.y < q.y + q.h + margin && q.y < p.y + p.h + margin;
}

function circleHitsBox(c, r, b) {
	var dx = Math.max(b.x - c.x, 0, c.x - (b.x + b.w)), dy = Math.max(b.y - c.y, 0, c.y - (b.y + b.h));
	return dx * dx + dy * dy < r * r;
}

// Positions of the nodes and their labels for a circle of radius R around
// (0, 0). A label's box lies beyond the circle on its node's side (its
// projection on the node's direction exceeds R + node radius + 8): tunnels
// are chords, inside the circle, so none can cross it.
function placeOnCircle(order, topo, R) {
	var n = order.length, out = { pos: {}, labels: {} };
	var start = (n == 2) ? Math.PI : -Math.PI / 2 + ((n % 2 == 0) ? Math.PI / n : 0);
	order.forEach(function(id, i) {
		var node = topo.byId[id];
		var angle = start + 2 * Math.PI * i / n;
		var ux = Math.cos(angle), uy = Math.sin(angle);
		if (Math.abs(ux) < 1e-9) ux = 0;
		if (Math.abs(uy) < 1e-9) uy = 0;
		var r = node.self ? SELF_R : NODE_R;
		var p = { x: R * ux, y: R * uy, r: r };
		var w = Math.max(textWidth(node.label, LABEL_FONT, true), textWidth(node.sub, SUB_FONT, false));
		var h = LABEL_FONT + SUB_FONT + 6;
		var reach = r + 8 + Math.abs(ux) * w / 2 + Math.abs(uy) * h / 2;
		var cx = p.x + ux * reach, cy = p.y + uy * reach;
		var anchor = (ux > 0.3) ? 'start' : (ux < -0.3) ? 'end' : 'middle';
		var box = { x: cx - w / 2, y: cy - h / 2, w: w, h: h };
		var tx = (anchor == 'start') ? box.x : (anchor == 'end') ? box.x + w : cx;
		out.pos[id] = p;
		out.labels[id] = { box: box, anchor: anchor, x: tx, y: box.y + LABEL_FONT - 2, y2: box.y + LABEL_FONT + SUB_FONT + 2 };
	});
	return out;
}

function layoutFits(order, placed, topo) {
	for (var i = 0; i < order.length; i++) {
		var a = placed.labels[order[i]].box;
		for (var j = 0; j < order.length; j++) {
			if (i != j && circleHitsBox(placed.pos[order[j]], placed.pos[order[j]].r + 6, a))
				return false;
			if (j > i && boxesOverlap(a, placed.labels[order[j]].box, 8))
				return false;
		}
	}
	return true;
}

// The whole map for a given width: the smallest circle whose labels do not
// collide, grown to use the width (up to a radius that keeps it compact).
function layoutMap(topo, state, width) {
	// The order depends on the nodes and tunnels only: worked out once for each.
	var ids = topo.nodes.map(function(n) { return n.id; });
	var shape = ids.join(',') + '/' + topo.edges.map(function(e) { return e.key; }).join(',');
	if (state.shape != shape) {
		state.order = circleOrder(ids, topo.edges, state.order);
		state.shape = shape;
	}
	var order = state.order;
	var R = 60 + 12 * order.length, placed;
	for (var k = 0; k < 40; k++) {
		placed = placeOnCircle(order, topo, R);
		if (layoutFits(order, placed, topo))
			break;
		R *= 1.1;
	}
	var minimum = bounds(order, placed);
	// Grow into the width there is, up to a height that fits a screen.
	var lo = R, hi = R * 5;
	for (var i = 0; i < 24; i++) {
		var mid = (lo + hi) / 2, b = bounds(order, placeOnCircle(order, topo, mid));
		if (b.w <= width && b.h <= MAP_MAX_HEIGHT)
			lo = mid;
		else
			hi = mid;
	}
	if (lo > R) {
		R = lo;
		placed = placeOnCircle(order, topo, R);
	}
	return { order: order, placed: placed, bounds: bounds(order, placed), minWidth: Math.ceil(minimum.w), R: R };
}

function bounds(order, placed) {
	var x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
	order.forEach(function(id) {
		var p = placed.pos[id], b = placed.labels[id].box;
		x0 = Math.min(x0, p.x - p.r, b.x);
		y0 = Math.min(y0, p.y - p.r, b.y);
		x1 = Math.max(x1, p.x + p.r, b.x + b.w);
		y1 = Math.max(y1, p.y + p.r, b.y + b.h);
	});
	var m = 12;
	return { x: x0 - m, y: y0 - m, w: x1 - x0 + 2 * m, h: y1 - y0 + 2 * m };
}

function S(tag, attrs, children) {
	var el = document.createElementNS(SVG_NS, tag);
	Object.keys(attrs || {}).forEach(function(k) {
		if (attrs[k] != null)
			el.setAttribute(k, String(attrs[k]));
	});
	(children || []).forEach(function(c) {
		el.appendChild(typeof c == 'string' ? document.createTextNode(c) : c);
	});
	return el;
}

function round(v) {
	return Math.round(v * 10) / 10;
}

function memberSummary(d, name) {
	var m = d.members.filter(function(x) { return x.name == name; })[0];
	if (!m)
		return '';
	var parts = [ m.name, m.overlay || '', 'AS' + ((m.asn != null) ? m.asn : '?') ];
	var state = [ reachedText(m) ];
	if (isObject(m.bgp) && m.bgp.state)
		state.push(_('BGP %s').format(m.bgp.state));
	if (isNumber(m.rtt_ms))
		state.push(_('%d ms').format(m.rtt_ms));
	if (isObject(m.nat))
		state.push(_('NAT %s').format(natText(m.nat)));
	return parts.join(' · ') + ' — ' + state.join(' · ');
}

function legendGlyph(kind) {
	var g;
	if (kind == 'direct' || kind == 'reported')
		g = S('line', { 'class': 'meshd-edge meshd-edge-' + kind, 'x1': 2, 'y1': 9, 'x2': 40, 'y2': 9 });
	else if (kind == 'path')
		g = S('line', { 'class': 'meshd-pathseg', 'x1': 6, 'y1': 9, 'x2': 36, 'y2': 9 });
	else
		g = S('g', { 'class': 'meshd-node' }, [ S('circle', { 'class': 'meshd-n-' + kind, 'cx': 21, 'cy': 9, 'r': 7 }) ]);
	return S('svg', { 'width': 42, 'height': 18, 'viewBox': '0 0 42 18', 'aria-hidden': 'true' }, [ g ]);
}

function renderMap(d, state) {
	var topo = topology(d);
	if (topo.nodes.length < 2)
		return E('p', {}, E('em', {}, [ _('The map appears once a friend\'s router joins (Friends: Invite a friend) or is added (Configuration › Members).') ]));

	var width = state.mapWidth || MAP_WIDTH_GUESS;
	var lay = layoutMap(topo, state, width);
	var narrow = width < lay.minWidth;
	var pos = lay.placed.pos, labels = lay.placed.labels, b = lay.bounds;
	var selected = state.selected, hovered = state.hovered;

	var edges = topo.edges.map(function(e) {
		var a = pos[e.a.id], z = pos[e.b.id];
		return S('line', {
			'class': 'meshd-edge meshd-edge-' + e.kind, 'data-key': 'e:' + e.key,
			'x1': round(a.x), 'y1': round(a.y), 'x2': round(z.x), 'y2': round(z.y)
		}, [ S('title', {}, [ (e.kind == 'direct' ? _('tunnel of this router: %s – %s') : _('tunnel a member reports: %s – %s')).format(e.a.label, e.b.label) ]) ]);
	});

	var path = selected ? pathTo(d, topo, selected) : [];
	var highlight = [];
	for (var i = 0; i + 1 < path.length; i++) {
		var a = pos[path[i]], z = pos[path[i + 1]];
		highlight.push(S('line', {
			'class': 'meshd-pathseg', 'data-key': 'p:' + path[i] + '|' + path[i + 1],
			'x1': round(a.x), 'y1': round(a.y), 'x2': round(z.x), 'y2': round(z.y)
		}));
	}

	var nodes = lay.order.map(function(id) {
		var n = topo.byId[id], p = pos[id], l = labels[id];
		var name = n.member ? n.member.name : null;
		var st = nodeState(n);
		var cls = 'meshd-node' + (name && name == selected ? ' meshd-selected' : '') + (name && name == hovered ? ' meshd-hover' : '');
		return S('g', {
			'class': cls, 'data-key': 'n:' + id, 'data-member': name,
			'tabindex': name ? 0 : null, 'role': name ? 'button' : null
		}, [
			S('title', {}, [ n.self ? _('this router') : n.label + ': ' + STATE_WORDS[st] + ' · ' + _('NAT %s').format(natText(n.member.nat)) ]),
			S('circle', { 'class': 'meshd-n-' + st, 'cx': round(p.x), 'cy': round(p.y), 'r': p.r }),
			S('text', { 'class': 'meshd-label', 'x': round(l.x), 'y': round(l.y), 'text-anchor': l.anchor }, [ n.label ]),
			S('text', { 'class': 'meshd-sub', 'x': round(l.x), 'y': round(l.y2), 'text-anchor': l.anchor }, [ n.sub || '' ])
		]);
	});

	var svg = S('svg', {
		'class': 'meshd-svg',
		'viewBox': [ round(b.x), round(b.y), round(b.w), round(b.h) ].join(' '),
		'style': 'max-width:%dpx'.format(Math.ceil(b.w)),
		'role': 'img',
		'aria-label': _('Map of the mesh')
	}, [ S('g', { 'data-key': 'paths' }, highlight), S('g', { 'data-key': 'edges' }, edges), S('g', { 'data-key': 'nodes' }, nodes) ]);

	// The list layout, for narrow pages.
	var neighbours = {};
	topo.edges.forEach(function(e) {
		(neighbours[e.a.id] = neighbours[e.a.id] || []).push(e.b.label);
		(neighbours[e.b.id] = neighbours[e.b.id] || []).push(e.a.label);
	});
	var items = topo.nodes.filter(function(n) { return n.member; }).map(function(n) {
		var st = nodeState(n), name = n.member.name;
		return E('li', {
			'data-key': 'l:' + name, 'data-member': name,
			'class': (name == selected ? 'meshd-selected' : '') + (name == hovered ? ' meshd-hover' : '')
		}, [
			dot(st, STATE_WORDS[st]), E('strong', {}, [ name ]), ' ',
			E('span', {}, [ reachedText(n.member) ]),
			E('br'),
			E('small', {}, [ _('tunnels with: %s').format((neighbours[n.id] || []).join(', ') || _('none')) ])
		]);
	});

	var legend = E('ul', { 'class': 'meshd-legend' }, [
		E('li', {}, [ legendGlyph('self'), _('this router') ]),
		E('li', {}, [ legendGlyph('up'), _('BGP up') ]),
		E('li', {}, [ legendGlyph('transit'), _('reached through others') ]),
		E('li', {}, [ legendGlyph('down'), _('unreachable') ]),
		E('li', { 'class': 'meshd-svg-only' }, [ legendGlyph('direct'), _('tunnel of this router') ]),
		E('li', { 'class': 'meshd-svg-only' }, [ legendGlyph('reported'), _('tunnel a member reports') ]),
		E('li', {}, [ legendGlyph('path'), _('path to the selected member') ])
	]);

	var focus = hovered || selected;
	var info;
	if (focus)
		info = [ E('strong', {}, [ memberSummary(d, focus) ]) ].concat(selected ? [ E('br'), _('Path to %s: %s').format(selected,
			path.map(function(id) { return topo.byId[id].label; }).join(' → ') || _('none now')) ] : []);
	else
		info = [ E('em', {}, [ _('Click a router to see the path the traffic takes to it; point at one to see its row.') ]) ];

	return E('div', { 'class': 'meshd-map-wrap' + (narrow ? ' meshd-narrow' : ''), 'data-min-width': lay.minWidth }, [
		svg,
		E('ul', { 'class': 'meshd-maplist' }, items),
		E('div', { 'class': 'meshd-mapinfo' }, info),
		legend
	]);
}

/* Sections */

function hostName(hints, c) {
	var mac = c.mac ? String(c.mac).toLowerCase() : null, name = null;
	Object.keys(hints || {}).forEach(function(k) {
		var h = hints[k];
		if (!isObject(h) || !h.name || name)
			return;
		if ((mac && k.toLowerCase() == mac) || list(h.ipaddrs).indexOf(c.ip) >= 0)
			name = h.name;
	});
	return name;
}

function friendsList(d) {
	if (!d.members.length)
		return E('p', {}, E('em', {}, [ _('No friend\'s router yet: invite one under Friends, or add one in Configuration › Members.') ]));
	return E('ul', { 'class': 'meshd-friends' }, d.members.map(function(m) {
		var p = m.path, how, st;
		if (!isObject(p)) {
			st = 'down';
			how = _('not reachable now');
		}
		else if (p.direct) {
			st = 'up';
			how = isNumber(m.rtt_ms) ? _('direct tunnel, %d ms').format(m.rtt_ms) : _('direct tunnel');
		}
		else {
			st = 'transit';
			how = (p.via && isNumber(p.hops)) ? _('through %s, %d hops').format(p.via, p.hops) : _('through other members');
		}
		return E('li', { 'data-key': 'f:' + m.name }, [ dot(st, STATE_WORDS[st]), E('strong', {}, [ m.name ]), ': ', how ]);
	}));
}

// What a console gets: its maker's words first, then the others', then what
// it means.
function natBlock(nat, vendor, exit) {
	var words = makerWords(nat, vendor), grade = natGrade(nat);
	var head = words.own || (words.others.length ? words.others.join(', ') : _('NAT type not known yet'));
	var detail = (isObject(nat) && nat.mapping && nat.filtering)
		? _('mapping %s, filtering %s (RFC 4787)').format(nat.mapping, nat.filtering) : null;
	return E('div', { 'class': 'meshd-grade meshd-grade-' + (grade || 'unknown'), 'title': detail || _('meshd learns it from its members\' answers') }, [
		E('strong', {}, [ head + ' ' + exitPhrase(exit) ]),
		(words.own && words.others.length) ? E('br') : '',
		(words.own && words.others.length) ? E('small', {}, [ words.others.join(' · ') ]) : '',
		E('br'),
		E('span', {}, [ grade ? GRADE_MEANING[grade] : _('Not measured yet: meshd learns it from its members\' answers.') ])
	]);
}

function consoleCard(d, c, hints) {
	var vendor = VENDOR_NAMES[c.vendor] || null;
	var name = hostName(hints, c);
	var title = name || (vendor ? _('%s at %s').format(vendor, c.ip) : c.ip);
	var sub = [ vendor || _('console of no known maker'), c.ip ];
	if (c.mac)
		sub.push(c.mac);
	sub.push((c.found == 'listed') ? _('listed in the settings') : _('found on the LAN'));

	var exitLine;
	if (!c.exit)
		exitLine = [ _('No game exit: it plays through this home\'s own internet.') ];
	else {
		var since = seconds(c.exit_since_s);
		exitLine = [
			_('Game exit: '), (c.exit == 'this router') ? E('em', {}, [ _('this router') ]) : E('strong', {}, [ c.exit ]),
			c.public ? ', ' + _('seen on the internet as %s').format(c.public) : '',
			since ? ' · ' + _('for %s').format(since) : ''
		];
	}
	return E('div', { 'class': 'meshd-card', 'data-key': 'c:' + c.ip }, [
		E('h4', {}, [ title ]),
		E('div', { 'class': 'meshd-muted' }, [ sub.join(' · ') ]),
		E('p', {}, [ natBlock(c.nat, c.vendor, c.exit) ]),
		E('p', {}, exitLine),
		E('div', {}, [ E('strong', {}, [ _('Friends it can reach') ]), friendsList(d) ])
	]);
}

// Without a game exit: what this home's own NAT gives a console.
function homeCard(d) {
	var nat = d.nat, consoleNat = isObject(nat) ? nat.console : null;
	return E('div', { 'class': 'meshd-card', 'data-key': 'home' }, [
		E('h4', {}, [ _('This home\'s internet') ]),
		E('div', { 'class': 'meshd-muted' }, [ _('What a console gets here without a game exit') ]),
		E('p', {}, [ natBlock(consoleNat, null, null) ]),
		E('p', {}, [
			_('This router is behind %s').format(natText(nat)),
			(isObject(nat) && nat.public) ? ', ' + _('public address %s').format(nat.public) : '',
			'. ',
			_('A friend\'s game exit gives consoles an open NAT (PlayStation Type 2, Xbox Open, Switch A).')
		])
	]);
}

function renderConsoles(d, state) {
	var x = d.exit;
	if (!x)
		return E('div', { 'class': 'meshd-cards' }, [
			E('p', { 'data-key': 'old' }, E('em', {}, [ _('meshd did not say which consoles it found (is it older than this page?).') ])),
			homeCard(d)
		]);
	var consoles = list(x.consoles);
	var cards = consoles.map(function(c) { return consoleCard(d, c, state.hints); });
	if (!consoles.length)
		cards.push(E('div', { 'class': 'meshd-card', 'data-key': 'none' }, [
			E('h4', {}, [ _('No console found yet') ]),
			E('p', {}, [ _('Turn the console on and connect it to this router\'s LAN: PlayStations, Xboxes and Nintendo Switches are found by their MAC address. Another device, or one behind a second router? List it in Configuration › Game exit › Consoles.') ])
		]));
	if (!list(x.exits).length)
		cards.push(homeCard(d));
	return E('div', { 'class': 'meshd-cards' }, cards);
}

function table(headers, rows, empty) {
	return E('table', { 'class': 'table' }, [
		E('tr', { 'class': 'tr table-titles' }, headers.map(function(h) {
			return E('th', { 'class': 'th' }, [ h ]);
		}))
	].concat(rows.length ? rows : [
		E('tr', { 'class': 'tr placeholder' }, [ E('td', { 'class': 'td' }, E('em', {}, [ empty ])) ])
	]));
}

function row(headers, cells, attrs) {
	return E('tr', Object.assign({ 'class': 'tr' }, attrs || {}), cells.map(function(c, i) {
		return E('td', { 'class': 'td', 'data-title': headers[i] }, (c == null || c === '') ? [ none() ] : [ c ]);
	}));
}

function renderExits(d) {
	var x = d.exit;
	if (!x)
		return E('div');
	var headers = [ _('Game exit'), _('Public address'), _('Load'), _('Hops'), _('New consoles') ];
	var rows = list(x.exits).map(function(e) {
		return row(headers, [
			E('span', {}, [
				e.local ? E('em', {}, [ _('this router') ]) : E('strong', {}, [ e.name ]),
				E('br'),
				E('small', {}, [ e.overlay || '' ])
			]),
			e.public || null,
			isNumber(e.load) ? ((e.load == 1) ? _('1 console') : _('%d consoles').format(e.load)) : null,
			(!e.local && isNumber(e.hops)) ? String(e.hops) : null,
			e.best ? help(_('get this one'), _('A console that starts playing now is given this exit; it keeps its exit while the exit lives.')) : ''
		], { 'data-key': 'x:' + (e.local ? 'local' : e.name) });
	});
	var offer = null;
	if (x.offered)
		offer = E('strong', {}, [ _('This router is a game exit at %s.').format(x.offered) ]);
	else if (x.offer && !/^not configured/.test(x.offer))
		offer = E('span', {}, [ _('This router as a game exit: %s').format(x.offer) ]);
	return E('div', {}, [
		E('p', {}, offer ? [ offer ] : []),
		table(headers, rows, _('No game exit in the mesh yet: consoles play through this home\'s own internet. A friend with a public IPv4 address can offer one (Configuration › Game exit).'))
	]);
}

function nodeRow(key, title, value) {
	return E('tr', { 'class': 'tr', 'data-key': key }, [
		E('td', { 'class': 'td left', 'width': '33%' }, [ title ]),
		E('td', { 'class': 'td left' }, [ (value == null || value === '') ? none() : value ])
	]);
}

function renderNode(d) {
	var s = d.status, nat = d.nat;
	var natDetail = [];

	if (isObject(nat)) {
		if (nat.public)
			natDetail.push(_('public address %s').format(nat.public));
		if (nat.mapping)
			natDetail.push(_('mapping %s').format(nat.mapping));
		if (nat.filtering)
			natDetail.push(_('filtering %s').format(nat.filtering));
	}

	return E('table', { 'class': 'table' }, [
		nodeRow('overlay', _('Overlay address'), s.overlay),
		nodeRow('asn', _('AS number'), (s.asn != null) ? String(s.asn) : null),
		nodeRow('announce', _('Announced prefixes'), list(s.announce).join(', ')),
		nodeRow('lan_map', _('LAN alias'), list(s.lan_map).length ? list(s.lan_map).map(function(m) {
			return _('%s is %s in the mesh').format(m.lan, m.alias);
		}).join(', ') : _('none: the LAN is announced as it is')),
		nodeRow('port', _('Mesh port'), (s.listen_port != null) ? _('UDP %d').format(s.listen_port) : null),
		nodeRow('key', _('Public key'), s.public_key ? E('code', { 'title': _('Give it to your friends: their member entry for this router needs it.') }, [ s.public_key ]) : null),
		nodeRow('nat', _('NAT type'), E('span', {}, [
			E('strong', {}, [ natText(nat) ]),
			natDetail.length ? E('br') : '',
			natDetail.length ? E('small', {}, [ natDetail.join(' · ') ]) : ''
		])),
		nodeRow('discovery', _('LAN discovery'), discoveryText(s.discovery)),
		nodeRow('version', _('Version'), s.version)
	]);
}

// LAN discovery: what is relayed, and what it did.
function discoveryText(d) {
	if (!isObject(d))
		return none();
	if (!d.enabled)
		return E('em', {}, [ _('off: consoles find only this home\'s consoles on the LAN') ]);
	var what = list(d.ports).map(function(p) { return String(p.port); });
	var head = _('relayed on %s, ports %s').format(d.interface || '?', what.join(', '));
	if (d.capture != 'open')
		return E('span', {}, [ E('strong', {}, [ _('not running') ]), ' · ', E('small', {}, [ d.capture, ' · ', head ]) ]);
	var t = isObject(d.total) ? d.total : {};
	var dropped = (t.dropped_rate || 0) + (t.dropped_rate_in || 0);
	var refused = (t.forged || 0) + (t.replayed || 0);
	var counts = _('%d sent to friends, %d from friends').format(t.relayed || 0, t.emitted || 0);
	if (dropped)
		counts += ' · ' + _('%d over the rate cap').format(dropped);
	if (refused)
		counts += ' · ' + _('%d forged or replayed').format(refused);
	return E('span', {}, [ E('strong', {}, [ head ]), E('br'), E('small', { 'title': _('Discovery packets relayed from this LAN to friends, and from friends re-sent on this LAN') }, [ counts ]) ]);
}

function bgpText(m) {
	var bgp = m.bgp;
	if (!isObject(bgp) || !bgp.state)
		return none();
	var text = bgp.state;
	if (bgp.state == 'Established' && isNumber(bgp.uptime_s))
		text += ' ' + _('for %s').format(seconds(bgp.uptime_s));
	if (bgp.state != 'Established' && bgp.last_down)
		return E('span', {}, [ text, ' ', E('span', { 'class': 'meshd-help', 'title': _('last down: %s').format(bgp.last_down) }, [ '⚠' ]) ]);
	return text;
}

function bfdText(m) {
	var bfd = m.bfd;
	if (!isObject(bfd))
		return _('off');
	var text = bfd.state || '–';
	if (bfd.state == 'Up' && isNumber(bfd.detection_ms))
		text = _('Up, %s ms').format(bfd.detection_ms);
	if (isNumber(bfd.jitter_ms) && bfd.jitter_ms >= 1)
		text += ' ' + _('(jitter %s ms)').format(bfd.jitter_ms.toFixed(1));
	if (bfd.traffic_moved)
		return E('span', {}, [ text, ' ', help(_('· traffic moved'), _('Traffic takes another path until this tunnel has proven healthy again; BGP stays up unless BFD stays down for the confirmation time.')) ]);
	return text;
}

function renderMembers(d, state) {
	var headers = [ _('Member'), _('Reached'), _('NAT type'), _('Handshake'), _('BGP'), _('BFD'), _('RTT') ];
	var rows = d.members.map(function(m) {
		var endpoint = m.endpoint ? [ ' · ', m.endpoint ] : [];
		if (m.endpoint && m.endpoint_confirmed === false)
			endpoint.push(' ', help(_('(not confirmed)'), _('No handshake from this address yet: it is where the member was configured or last seen, not proven to answer.')));
		var cls = 'tr meshd-row' + (m.name == state.selected ? ' meshd-selected' : '') + (m.name == state.hovered ? ' meshd-hover' : '');
		return row(headers, [
			E('span', {}, [
				E('strong', {}, [ m.name ]),
				E('br'),
				E('small', {}, [ m.overlay || '', ' · AS', (m.asn != null) ? String(m.asn) : '?' ].concat(endpoint))
			]),
			isObject(m.path) ? reachedText(m) : E('em', {}, [ _('unreachable') ]),
			isObject(m.nat) ? natText(m.nat) : null,
			isNumber(m.handshake_age_s) ? _('%s ago').format(seconds(m.handshake_age_s)) : _('never'),
			bgpText(m),
			bfdText(m),
			isNumber(m.rtt_ms) ? _('%d ms').format(m.rtt_ms) : null
		], { 'class': cls, 'data-key': 'm:' + m.name, 'data-member': m.name });
	});
	return table(headers, rows, _('No friend\'s router yet. Invite one under Friends (Invite a friend), or add one in Configuration › Members with its public key, overlay address and AS number, and give your friend this router\'s public key (under This router).'));
}

function renderRoutes(d) {
	var headers = [ _('Prefix'), _('Next hop'), _('AS path'), _('Why this path'), _('Other paths') ];
	var rows = d.routes.map(function(r) {
		var best = isObject(r.best) ? r.best : {};
		var hop = (best.via == 'local') ? E('em', {}, [ _('this router') ]) : best.via;
		var alternatives = list(r.alternatives).map(function(a) {
			return E('div', {}, [ _('via %s [%s]: lost on %s').format(a.via || '?', a.as_path || '', a.lost || '?') ]);
		});
		return row(headers, [
			r.prefix,
			hop ? E('span', {}, [ hop, best.next_hop ? E('small', {}, [ ' (' + best.next_hop + ')' ]) : '' ]) : null,
			best.as_path ? E('code', {}, [ best.as_path ]) : (best.via == 'local' ? E('em', {}, [ _('local') ]) : null),
			best.reason ? best.reason + ((r.ecmp > 1) ? ' · ' + _('%d equal paths').format(r.ecmp) : '') : null,
			alternatives.length ? E('div', {}, alternatives) : null
		], { 'data-key': 'r:' + r.prefix });
	});
	return table(headers, rows, _('No routes yet: they appear once a member\'s BGP session is up.'));
}

/* Friends: invites and joins */

// How long an invite has left, as a person says it.
function timeLeft(s) {
	if (!isNumber(s))
		return null;
	if (s < 60)
		return _('less than a minute');
	if (s < 3600)
		return _('%d min').format(Math.floor(s / 60));
	var h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
	if (s < 86400)
		return m ? _('%d h %d min').format(h, m) : _('%d h').format(h);
	return h ? _('%d d %d h').format(Math.floor(s / 86400), h) : _('%d d').format(Math.floor(s / 86400));
}

// A join, as the card and the Join dialog say it: [ words, 'good'|'bad'|null ].
function joinWords(j) {
	if (!isObject(j) || !j.state || j.state == 'none')
		return null;
	var who = j.inviter ? _('%s\'s').format(j.inviter) : _('the inviter\'s');
	switch (j.state) {
	case 'joining':
		return [ _('Asking %s router to let this one in…').format(who), null ];
	case 'writing':
		return [ _('%s router said yes: each router adds the other as a member…').format(who), null ];
	case 'joined':
		return [ j.inviter ? _('Joined %s\'s mesh: it is a member now.').format(j.inviter) : _('Joined the mesh: the inviter is a member now.'), 'good' ];
	case 'failed':
		return [ _('Could not join %s mesh: %s').format(who, j.reason || _('no reason given')), 'bad' ];
	}
	return [ j.state, null ];
}

var INVITE_HELP = _('Invite a friend makes a token that lets one router join this mesh, once. Join a mesh takes the token a friend\'s router made. The two routers then add each other as members and connect; no terminal needed.');

function renderInvites(d) {
	var inv = d.invites, body;
	if (!inv)
		body = [
			E('h4', {}, [ _('Invite a friend, or join a mesh') ]),
			E('p', {}, E('em', {}, [ _('This meshd makes no invites (is it older than this page?). Add a friend\'s router in Configuration › Members.') ]))
		];
	else {
		var pending = list(inv.pending).filter(isObject);
		var join = joinWords(inv.join);
		body = [
			E('h4', {}, [ _('Invite a friend, or join a mesh') ]),
			E('div', { 'class': 'meshd-muted' }, [ INVITE_HELP ]),
			E('div', { 'class': 'meshd-actions' }, [
				E('button', {
					'type': 'button', 'class': 'cbi-button cbi-button-action', 'data-action': 'invite',
					'title': _('Make a one-time token for a friend\'s router: your friend pastes it under Join a mesh.')
				}, [ _('Invite a friend') ]),
				E('button', {
					'type': 'button', 'class': 'cbi-button cbi-button-action', 'data-action': 'join',
					'title': _('Paste the token a friend\'s router made, and this router joins that mesh.')
				}, [ _('Join a mesh') ])
			]),
			E('div', { 'data-key': 'pending' }, pending.length ? [
				E('strong', {}, [ _('Invites not used yet') ]),
				E('ul', { 'class': 'meshd-pending' }, pending.map(function(p) {
					var left = timeLeft(p.expires_in_s);
					return E('li', {
						'data-key': 'i:' + p.name,
						'title': _('An invite for a router named %s: it works once, until it expires. Restarting meshd cancels it.').format(p.name)
					}, [ E('strong', {}, [ p.name ]), left ? ' · ' + _('%s left').format(left) : '' ]);
				}))
			] : [ E('em', {}, [ _('No invite waiting to be used.') ]) ]),
			join ? E('p', { 'data-key': 'join', 'class': join[1] ? 'meshd-' + join[1] : null, 'title': _('This router\'s latest join: Join a mesh starts another.') }, [ join[0] ]) : null
		];
	}
	return E('div', { 'class': 'meshd-cards' }, [ E('div', { 'class': 'meshd-card', 'data-key': 'invites' }, body) ]);
}

function section(id, title, body) {
	return E('div', { 'class': 'cbi-section', 'data-key': 's:' + id }, [ E('h3', {}, [ title ]), E('div', { 'id': 'meshd-' + id }, [ body ]) ]);
}

// The parts of the status document, as the ubus methods return them.
function parts(doc) {
	return {
		status: doc,
		members: list(doc.members),
		routes: list(doc.routes),
		nat: isObject(doc.nat) ? doc.nat : null,
		exit: isObject(doc.exit) ? doc.exit : null,
		invites: isObject(doc.invites) ? doc.invites : null
	};
}

function build(doc, state) {
	var children = [
		E('style', {}, [ CSS ]),
		E('h2', {}, [ _('Game Mesh') ]),
		E('div', { 'class': 'cbi-map-descr' }, [ _('Your consoles first: the NAT type each one gets, its game exit, and the friends it reaches. Then the routers of the mesh, how this router reaches each of them, and the routes BGP chose. Refreshed every %d seconds.').format(REFRESH_SECONDS) ])
	];
	if (!doc) {
		children.push(E('div', { 'class': 'cbi-section', 'data-key': 's:down' }, [
			E('h3', {}, [ _('meshd is not answering') ]),
			E('div', { 'id': 'meshd-down' }, [
				E('p', {}, [ _('meshd is not running, or it has not registered its ubus object yet. This page shows the mesh as soon as it answers.') ]),
				E('ul', {}, [
					E('li', {}, [ _('Check Services › Game Mesh › Configuration: Enabled, an overlay address, an AS number and an announced prefix.') ]),
					E('li', {}, [ _('Look at the system log (Status › System Log): meshd says why it refuses a configuration.') ]),
					E('li', {}, [ _('Start it in System › Startup, or with: service meshd start') ])
				])
			])
		]));
		return E('div', { 'class': 'cbi-map meshd-status' }, children);
	}
	var d = parts(doc);
	if (state.selected && !d.members.some(function(m) { return m.name == state.selected; }))
		state.selected = null;
	if (state.hovered && !d.members.some(function(m) { return m.name == state.hovered; }))
		state.hovered = null;
	children.push(
		section('consoles', _('Consoles'), renderConsoles(d, state)),
		section('invites', _('Friends'), renderInvites(d)),
		section('exits', _('Game exits'), renderExits(d)),
		section('node', _('This router'), renderNode(d)),
		section('map', _('Map'), renderMap(d, state)),
		section('members', _('Members'), renderMembers(d, state)),
		section('routes', _('Routes'), renderRoutes(d))
	);
	return E('div', { 'class': 'cbi-map meshd-status' }, children);
}

/* Updating in place */

function sameKind(a, b) {
	return a.nodeType == b.nodeType && a.nodeName == b.nodeName && a.namespaceURI == b.namespaceURI;
}

function keyOf(n) {
	return (n.nodeType == 1) ? n.getAttribute('data-key') : null;
}

// Brings `live` to look like `next` (same element kind): attributes first,
// then the children, matched by data-key where they have one and by position
// otherwise. Unchanged text nodes and elements are left alone.
function morph(live, next) {
	var i, attr;
	for (i = 0; i < next.attributes.length; i++) {
		attr = next.attributes[i];
		if (live.getAttribute(attr.name) !== attr.value)
			live.setAttribute(attr.name, attr.value);
	}
	for (i = live.attributes.length - 1; i >= 0; i--) {
		attr = live.attributes[i];
		if (!next.hasAttribute(attr.name))
			live.removeAttribute(attr.name);
	}
	morphChildren(live, next);
}

function morphChildren(live, next) {
	var byKey = {}, c, want = [];
	for (c = live.firstChild; c; c = c.nextSibling)
		if (keyOf(c) != null)
			byKey[keyOf(c)] = c;
	for (c = next.firstChild; c; c = c.nextSibling)
		want.push(c);

	var cursor = live.firstChild;
	want.forEach(function(w) {
		var key = keyOf(w), match = null;
		if (key != null)
			match = (byKey[key] && sameKind(byKey[key], w)) ? byKey[key] : null;
		else if (cursor && keyOf(cursor) == null && sameKind(cursor, w))
			match = cursor;

		if (!match) {
			live.insertBefore(w, cursor);
			return;
		}
		if (key != null)
			delete byKey[key];
		if (match === cursor)
			cursor = cursor.nextSibling;
		else
			live.insertBefore(match, cursor);
		if (match.nodeType == 3 || match.nodeType == 8) {
			if (match.nodeValue !== w.nodeValue)
				match.nodeValue = w.nodeValue;
		}
		else {
			morph(match, w);
		}
	});
	while (cursor) {
		var gone = cursor;
		cursor = cursor.nextSibling;
		live.removeChild(gone);
	}
}

/* The Friends card's dialogs */

var DURATIONS = [
	{ seconds: 3600, label: _('1 hour'), short: _('1 h') },
	{ seconds: 86400, label: _('24 hours'), short: _('24 h') },
	{ seconds: 7 * 86400, label: _('7 days'), short: _('7 days') }
];

// An address and UDP port meshd takes as an endpoint: 203.0.113.7:51820 or
// [2001:db8::1]:51820.
function isEndpoint(v) {
	var m = /^(?:(\d{1,3}(?:\.\d{1,3}){3})|\[([0-9A-Fa-f:.]+)\]):(\d{1,5})$/.exec(v);
	if (!m || +m[3] < 1 || +m[3] > 65535)
		return false;
	return m[1] ? m[1].split('.').every(function(o) { return +o <= 255; }) : m[2].indexOf(':') >= 0;
}

// A form row as LuCI draws one: title, field, description.
function dialogRow(id, title, field, description) {
	return E('div', { 'class': 'cbi-value' }, [
		E('label', { 'class': 'cbi-value-title', 'for': id }, [ title ]),
		E('div', { 'class': 'cbi-value-field' }, [ field, E('div', { 'class': 'cbi-value-description' }, [ description ]) ])
	]);
}

// Sets a dialog's message line: words, and 'good', 'bad' or nothing.
function say(node, text, kind) {
	node.className = 'meshd-msg' + (kind ? ' meshd-' + kind : '');
	if (node.textContent !== text)
		node.textContent = text;
}

// What went wrong with a call: meshd's own words, or ubus's.
function failure(e) {
	var why = String((e && e.message) || e || '');
	if (/Permission denied|code 6\b/.test(why))
		return _('LuCI may not call meshd\'s invites: is luci-app-meshd up to date? (%s)').format(why);
	if (/Object not found|Method not found|code [34]\b/.test(why))
		return _('meshd is not answering, or it is too old for invites (%s)').format(why);
	return _('meshd did not answer: %s').format(why);
}

function closeButton(label) {
	return E('button', { 'type': 'button', 'class': 'cbi-button', 'click': function() { ui.hideModal(); } }, [ label || _('Close') ]);
}

// The token: in a read-only field that selects itself whole, and a button
// that copies it.
function tokenBlock(token) {
	var area = E('textarea', {
		'class': 'cbi-input-textarea meshd-token', 'id': 'meshd-invite-token', 'readonly': 'readonly', 'rows': 4,
		'spellcheck': 'false', 'autocomplete': 'off', 'aria-label': _('Invite token'),
		'title': _('The invite token: a click selects it whole, ready to copy.'),
		'focus': function(ev) { ev.target.select(); },
		'click': function(ev) { ev.target.select(); }
	}, [ token ]);
	var note = E('span', { 'class': 'meshd-muted', 'aria-live': 'polite' }, [ '' ]);
	var copy = E('button', {
		'type': 'button', 'class': 'cbi-button cbi-button-action',
		'title': _('Copy the token to the clipboard, to paste it in a message to your friend'),
		'click': function() {
			area.focus();
			area.select();
			var typed = function() {
				var ok = false;
				try { ok = document.execCommand('copy'); } catch (e) {}
				note.textContent = ok ? _('Copied.') : _('Selected: press Ctrl+C (⌘C on a Mac) to copy it.');
			};
			if (window.navigator.clipboard && window.navigator.clipboard.writeText)
				window.navigator.clipboard.writeText(area.value).then(function() {
					note.textContent = _('Copied.');
				}, typed);
			else
				typed();
		}
	}, [ _('Copy') ]);
	return { area: area, nodes: [ area, E('div', { 'class': 'meshd-copy' }, [ copy, note ]) ] };
}

// The member a click or a pointer is on, if any.
function memberAt(el, root) {
	for (; el && el !== root; el = el.parentNode)
		if (el.getAttribute && el.getAttribute('data-member'))
			return el.getAttribute('data-member');
	return null;
}

// The action a click is on (the Friends card's buttons), if any.
function actionAt(el, root) {
	for (; el && el !== root; el = el.parentNode)
		if (el.getAttribute && el.getAttribute('data-action'))
			return el.getAttribute('data-action');
	return null;
}

return view.extend({
	load: function() {
		this.fetchedAt = Date.now();
		return Promise.all([ fetchStatus(), fetchHints() ]);
	},

	render: function(data) {
		this.doc = data[0];
		this.state = { selected: null, hovered: null, order: null, shape: null, mapWidth: null, hints: data[1] || {} };
		this.hintsAt = Date.now();
		this.root = build(this.doc, this.state);

		var root = this.root;
		root.addEventListener('click', L.bind(function(ev) {
			var action = actionAt(ev.target, root);
			if (action == 'invite')
				return this.showInvite();
			if (action == 'join')
				return this.showJoin();
			var name = memberAt(ev.target, root);
			// A click that ends a text selection is not a choice of member.
			var sel = window.getSelection ? window.getSelection() : null;
			if (!name || (sel && !sel.isCollapsed && sel.toString()))
				return;
			this.state.selected = (this.state.selected == name) ? null : name;
			this.redraw();
		}, this));
		root.addEventListener('keydown', L.bind(function(ev) {
			var name = memberAt(ev.target, root);
			if (name && (ev.key == 'Enter' || ev.key == ' ')) {
				ev.preventDefault();
				this.state.selected = (this.state.selected == name) ? null : name;
				this.redraw();
			}
		}, this));
		root.addEventListener('mouseover', L.bind(function(ev) {
			var name = memberAt(ev.target, root);
			if (name != this.state.hovered) {
				this.state.hovered = name;
				this.redraw();
			}
		}, this));
		root.addEventListener('mouseleave', L.bind(function() {
			if (this.state.hovered) {
				this.state.hovered = null;
				this.redraw();
			}
		}, this));
		// The map is laid out for the width it has.
		if (typeof ResizeObserver == 'function')
			new ResizeObserver(L.bind(function(entries) {
				var w = Math.floor(entries[0].contentRect.width);
				if (w > 0 && Math.abs(w - (this.state.mapWidth || 0)) >= 4) {
					this.state.mapWidth = w;
					// After this frame: a redraw inside the observer's
					// callback would resize what it observes.
					window.requestAnimationFrame(L.bind(this.redraw, this));
				}
			}, this)).observe(root);

		poll.add(L.bind(this.refresh, this), REFRESH_SECONDS);
		return root;
	},

	// One ubus call per refresh. LuCI runs a poll function as soon as it is
	// added: the document load() fetched moments ago is not fetched again.
	refresh: function() {
		if (Date.now() - this.fetchedAt < REFRESH_SECONDS * 500)
			return Promise.resolve();
		this.fetchedAt = Date.now();
		return fetchStatus().then(L.bind(function(doc) {
			this.doc = doc;
			this.redraw();
			return this.refreshHints(doc);
		}, this));
	},

	// A console that turned up after the page was opened has no host name
	// yet: ask again, at most once a minute.
	refreshHints: function(doc) {
		var consoles = (doc && isObject(doc.exit)) ? list(doc.exit.consoles) : [];
		var state = this.state;
		if (!consoles.some(function(c) { return !hostName(state.hints, c); }) || Date.now() - this.hintsAt < HINTS_SECONDS * 1000)
			return;
		this.hintsAt = Date.now();
		return fetchHints().then(L.bind(function(hints) {
			this.state.hints = hints;
			this.redraw();
		}, this));
	},

	redraw: function() {
		morph(this.root, build(this.doc, this.state));
	},

	// After an invite or a join: the card shows it at once.
	refreshNow: function() {
		this.fetchedAt = Date.now();
		return fetchStatus().then(L.bind(function(doc) {
			this.doc = doc;
			this.redraw();
		}, this));
	},

	// Invite a friend: the friend's router's name and how long the invite
	// lasts, then the token to give them.
	showInvite: function() {
		var self = this;
		var name = E('input', {
			'type': 'text', 'id': 'meshd-invite-name', 'class': 'cbi-input-text meshd-input', 'maxlength': 32,
			'placeholder': _('e.g. bob'), 'autocomplete': 'off', 'spellcheck': 'false',
			'title': _('1 to 32 letters, digits or _')
		});
		var expires = E('select', { 'id': 'meshd-invite-expires', 'class': 'cbi-input-select meshd-input', 'title': _('After this, the token no longer works') },
			DURATIONS.map(function(d) {
				return E('option', { 'value': d.seconds, 'selected': d.seconds == 86400 ? 'selected' : null }, [ d.label ]);
			}));
		var endpoint = E('input', {
			'type': 'text', 'id': 'meshd-invite-endpoint', 'class': 'cbi-input-text meshd-input',
			'placeholder': '203.0.113.7:51820', 'autocomplete': 'off', 'spellcheck': 'false',
			'title': _('An IPv4 address and port, or [IPv6]:port')
		});
		var endpointRow = dialogRow('meshd-invite-endpoint', _('Reach this router at'), endpoint,
			_('Only if meshd asks for it: the internet address of this home and the mesh port (forwarded to this router), as your friend\'s router can reach it.'));
		endpointRow.style.display = 'none';
		var msg = E('div', { 'class': 'meshd-msg', 'role': 'status', 'aria-live': 'polite' }, [ '' ]);
		var make = E('button', { 'type': 'button', 'class': 'cbi-button cbi-button-positive important' }, [ _('Make the invite') ]);

		var check = function() {
			var v = name.value.trim(), ok = MEMBER_NAME.test(v);
			name.classList.toggle('cbi-input-invalid', !ok && name.value !== '');
			return ok;
		};
		var submit = function() {
			var v = name.value.trim(), seconds = +expires.value, at = endpoint.value.trim();
			if (!check()) {
				name.classList.add('cbi-input-invalid');
				say(msg, v ? _('"%s" cannot be a router\'s name here: use 1 to 32 letters, digits or _, without spaces.').format(v) : _('Enter your friend\'s router\'s name first.'), 'bad');
				name.focus();
				return;
			}
			if (at && !isEndpoint(at)) {
				say(msg, _('"%s" is not an address and port, such as 203.0.113.7:51820.').format(at), 'bad');
				endpoint.focus();
				return;
			}
			make.disabled = true;
			say(msg, _('Asking meshd…'));
			return callInvite(v, seconds, at ? [ at ] : undefined).then(function(r) {
				if (isObject(r) && typeof r.token == 'string' && r.token)
					return self.showToken(v, seconds, r.token);
				var why = (isObject(r) && r.error) ? String(r.error) : _('meshd answered neither a token nor why');
				if (/no endpoint/i.test(why)) {
					endpointRow.style.display = '';
					why = _('meshd does not know this router\'s internet address yet (no friend has told it). Enter it with the mesh port below, then try again.');
				}
				else if (/member .* already|is pending/.test(why))
					why = _('%s. Choose another name for your friend\'s router.').format(why.charAt(0).toUpperCase() + why.slice(1));
				else if (/invites are pending/.test(why))
					why = _('%s.').format(why.charAt(0).toUpperCase() + why.slice(1));
				say(msg, _('No invite made: %s').format(why), 'bad');
			}, function(e) {
				say(msg, _('No invite made: %s').format(failure(e)), 'bad');
			}).finally(function() {
				make.disabled = false;
			});
		};
		make.addEventListener('click', submit);
		name.addEventListener('input', function() { check(); });
		[ name, endpoint ].forEach(function(input) {
			input.addEventListener('keydown', function(ev) {
				if (ev.key == 'Enter') {
					ev.preventDefault();
					submit();
				}
			});
		});

		ui.showModal(_('Invite a friend'), [
			E('div', { 'class': 'meshd-dialog' }, [
				E('p', {}, [ _('Your friend\'s router joins this mesh with the token this makes. It works once.') ]),
				dialogRow('meshd-invite-name', _('Friend\'s router name'), name,
					_('How this router will list it under Members: 1 to 32 letters, digits or _ (e.g. bob).')),
				dialogRow('meshd-invite-expires', _('Valid for'), expires,
					_('Unused after this, the token stops working.')),
				endpointRow,
				msg,
				E('div', { 'class': 'right' }, [ closeButton(_('Cancel')), ' ', make ])
			])
		]);
		name.focus();
	},

	showToken: function(name, seconds, token) {
		var d = DURATIONS.filter(function(x) { return x.seconds == seconds; })[0];
		var valid = d ? d.short : timeLeft(seconds);
		var t = tokenBlock(token);
		ui.showModal(_('Invite for %s').format(name), [
			E('div', { 'class': 'meshd-dialog' }, [ E('p', {}, [ _('Give this token to your friend, in a private message:') ]) ].concat(t.nodes, [
				E('p', {}, [ E('strong', {}, [ _('On your friend\'s router: Services › Game Mesh › Join a mesh, and paste this. Valid %s, once.').format(valid) ]) ]),
				E('p', { 'class': 'meshd-muted' }, [ _('Whoever has the token can join once, so send it to your friend only. Until then it is listed under Invites not used yet.') ]),
				E('div', { 'class': 'right' }, [ closeButton() ])
			]))
		]);
		t.area.focus();
		this.refreshNow();
	},

	// Join a mesh: the token, then the join's progress until it ends.
	showJoin: function() {
		var self = this;
		var area = E('textarea', {
			'class': 'cbi-input-textarea meshd-token', 'id': 'meshd-join-token', 'rows': 4,
			'spellcheck': 'false', 'autocomplete': 'off', 'placeholder': 'MESHD1…',
			'title': _('Paste the whole token your friend sent you')
		});
		var msg = E('div', { 'class': 'meshd-msg', 'role': 'status', 'aria-live': 'polite' }, [ '' ]);
		var join = E('button', { 'type': 'button', 'class': 'cbi-button cbi-button-positive important' }, [ _('Join') ]);
		var cancel = closeButton(_('Cancel'));

		// Every JOIN_POLL_MS until the join ends, JOIN_POLLS have passed,
		// or the dialog was closed.
		var follow = function(n) {
			if (!msg.isConnected || !document.body.classList.contains('modal-overlay-active'))
				return;
			if (n >= JOIN_POLLS) {
				say(msg, _('No outcome after %d s. meshd goes on trying for a while: the Friends card shows how it ends.').format(JOIN_POLLS * JOIN_POLL_MS / 1000), 'bad');
				cancel.textContent = _('Close');
				return;
			}
			window.setTimeout(function() {
				L.resolveDefault(callInvites(), null).then(function(inv) {
					var j = isObject(inv) ? inv.join : null, words = joinWords(j);
					if (words && msg.isConnected)
						say(msg, words[0], words[1]);
					if (j && (j.state == 'joined' || j.state == 'failed')) {
						cancel.textContent = _('Close');
						if (j.state == 'failed') {
							area.readOnly = false;
							join.style.display = '';
							join.disabled = false;
						}
						return self.refreshNow();
					}
					follow(n + 1);
				});
			}, JOIN_POLL_MS);
		};

		var submit = function() {
			// A token wrapped over lines in a chat is still one token.
			var token = area.value.replace(/\s+/g, '');
			if (!token) {
				say(msg, _('Paste the token your friend sent you first.'), 'bad');
				area.focus();
				return;
			}
			if (!/^MESHD1/i.test(token)) {
				say(msg, _('This is not an invite token: a token starts with MESHD1.'), 'bad');
				area.focus();
				return;
			}
			join.disabled = true;
			say(msg, _('Asking meshd…'));
			return callJoin(token).then(function(r) {
				if (isObject(r) && r.state) {
					area.readOnly = true;
					join.style.display = 'none';
					say(msg, joinWords({ state: r.state, inviter: null })[0]);
					follow(0);
					return;
				}
				var why = (isObject(r) && r.error) ? String(r.error) : _('meshd answered neither a state nor why');
				say(msg, _('Not joined: %s').format(why), 'bad');
				join.disabled = false;
			}, function(e) {
				say(msg, _('Not joined: %s').format(failure(e)), 'bad');
				join.disabled = false;
			});
		};
		join.addEventListener('click', submit);
		area.addEventListener('keydown', function(ev) {
			if (ev.key == 'Enter') {
				ev.preventDefault();
				submit();
			}
		});

		ui.showModal(_('Join a mesh'), [
			E('div', { 'class': 'meshd-dialog' }, [
				E('p', {}, [ _('Paste the token a friend\'s router made with Invite a friend. This router asks that router over the mesh port; when it says yes, each adds the other as a member, within seconds.') ]),
				E('label', { 'for': 'meshd-join-token' }, [ E('strong', {}, [ _('Invite token') ]) ]),
				area,
				msg,
				E('div', { 'class': 'right' }, [ cancel, ' ', join ])
			])
		]);
		area.focus();
	},

	handleSaveApply: null,
	handleSave: null,
	handleReset: null
});
