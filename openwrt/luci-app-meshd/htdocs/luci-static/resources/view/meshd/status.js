'use strict';
'require view';
'require rpc';
'require poll';
'require dom';

/*
 * Live state of the mesh from meshd's ubus object. Every reply is a JSON
 * object holding the same fields as `meshd status --json`:
 *   status  -> the whole document (this view reads the node's own fields)
 *   members -> { "members": [ ... ] }
 *   routes  -> { "routes": [ ... ] }
 *   nat     -> { "nat": { ... } }
 *   consoles -> the document's "exit" object itself: { "offered", "consoles",
 *               "exits", ... } (the consoles, each one's game exit and NAT
 *               type, and the game exits of the mesh)
 * The fields read here are listed in ../../../../../status-contract.json
 * (openwrt/luci-app-meshd/status-contract.json): keep the two in step.
 */

var callStatus = rpc.declare({
	object: 'meshd',
	method: 'status',
	expect: { '': {} }
});

var callMembers = rpc.declare({
	object: 'meshd',
	method: 'members',
	expect: { members: [] }
});

var callRoutes = rpc.declare({
	object: 'meshd',
	method: 'routes',
	expect: { routes: [] }
});

var callNat = rpc.declare({
	object: 'meshd',
	method: 'nat',
	expect: { nat: {} }
});

var callConsoles = rpc.declare({
	object: 'meshd',
	method: 'consoles',
	expect: { '': {} }
});

var SVG_NS = 'http://www.w3.org/2000/svg';
var REFRESH_SECONDS = 2;

var COLOR_SELF = '#1565c0';
var COLOR_UP = '#2e7d32';
var COLOR_TRANSIT = '#f9a825';
var COLOR_DOWN = '#9e9e9e';
var COLOR_PATH = '#e65100';

function fetchAll() {
	return Promise.all([
		L.resolveDefault(callStatus(), null),
		L.resolveDefault(callMembers(), []),
		L.resolveDefault(callRoutes(), []),
		L.resolveDefault(callNat(), null),
		L.resolveDefault(callConsoles(), null)
	]).then(function(r) {
		return {
			status: (r[0] && typeof r[0] == 'object') ? r[0] : null,
			members: Array.isArray(r[1]) ? r[1] : [],
			routes: Array.isArray(r[2]) ? r[2] : [],
			nat: (r[3] && typeof r[3] == 'object') ? r[3] : null,
			exit: (r[4] && typeof r[4] == 'object') ? r[4] : null
		};
	});
}

/* Formatting */

function isObject(v) {
	return v != null && typeof v == 'object' && !Array.isArray(v);
}

function isNumber(v) {
	return typeof v == 'number' && isFinite(v);
}

function none() {
	return E('em', {}, '–');
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

function reached(m) {
	var p = m.path;
	if (!isObject(p))
		return E('em', {}, _('unreachable'));
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

var VENDORS = {
	sony: 'PlayStation',
	microsoft: 'Xbox',
	nintendo: 'Nintendo'
};

// The NAT type a console gets, in each console maker's words (meshd derives
// all three from the mapping and filtering behaviour it measured): its own
// maker's first, the others below it. A console of no known maker gets all
// three alike.
function consoleNatText(c) {
	var nat = c.nat;
	if (!isObject(nat))
		return null;
	var words = {
		sony: nat.playstation ? _('PlayStation Type %d').format(nat.playstation) : null,
		microsoft: nat.xbox ? _('Xbox %s').format(nat.xbox) : null,
		nintendo: nat['switch'] ? _('Switch %s').format(nat['switch']) : null
	};
	var own = VENDORS[c.vendor] ? c.vendor : null;
	var others = Object.keys(VENDORS).filter(function(v) { return v != own && words[v]; })
		.map(function(v) { return words[v]; });
	var detail = (nat.mapping && nat.filtering)
		? _('mapping %s, filtering %s').format(nat.mapping, nat.filtering) : null;

	if (!own && !others.length)
		return E('em', { 'title': detail }, _('not known yet'));
	return E('span', { 'title': detail }, [
		E('strong', {}, own ? (words[own] || _('not known yet')) : others.join(' · ')),
		(own && others.length) ? E('br') : '',
		(own && others.length) ? E('small', {}, others.join(' · ')) : ''
	]);
}

function consoleExitText(c) {
	if (!c.exit)
		return E('em', {}, _('none: this home\'s own internet'));
	var since = seconds(c.exit_since_s);
	return E('span', {}, [
		(c.exit == 'this router') ? E('em', {}, _('this router')) : E('strong', {}, c.exit),
		since ? E('small', {}, [ ' · ', _('for %s').format(since) ]) : ''
	]);
}

function bgpText(m) {
	var bgp = m.bgp;
	if (!isObject(bgp) || !bgp.state)
		return none();
	var text = bgp.state;
	if (bgp.state == 'Established' && isNumber(bgp.uptime_s))
		text += ' ' + _('for %s').format(seconds(bgp.uptime_s));
	if (bgp.state != 'Established' && bgp.last_down)
		return E('span', { 'title': _('last down: %s').format(bgp.last_down) }, [ text, ' ⚠' ]);
	return text;
}

function bfdText(m) {
	var bfd = m.bfd;
	if (!isObject(bfd))
		return _('off');
	var text = bfd.state || none();
	if (bfd.state == 'Up' && isNumber(bfd.detection_ms))
		text = _('Up, %s ms').format(bfd.detection_ms);
	if (isNumber(bfd.jitter_ms) && bfd.jitter_ms >= 1)
		text += ' ' + _('(jitter %s ms)').format(bfd.jitter_ms.toFixed(1));
	if (bfd.traffic_moved)
		return E('span', { 'title': _('Traffic takes another path until this tunnel has proven healthy again; BGP stays up unless BFD stays down for the confirmation time.') }, [ text, ' ', _('· traffic moved') ]);
	return text;
}

function table(headers, rows, empty) {
	var t = E('table', { 'class': 'table' }, [
		E('tr', { 'class': 'tr table-titles' }, headers.map(function(h) {
			return E('th', { 'class': 'th' }, h);
		}))
	]);
	if (!rows.length)
		t.appendChild(E('tr', { 'class': 'tr placeholder' }, [
			E('td', { 'class': 'td' }, E('em', {}, empty))
		]));
	rows.forEach(function(r) { t.appendChild(r); });
	return t;
}

function row(headers, cells, attrs) {
	return E('tr', Object.assign({ 'class': 'tr' }, attrs || {}), cells.map(function(c, i) {
		return E('td', { 'class': 'td', 'data-title': headers[i] }, (c == null || c === '') ? none() : c);
	}));
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
	var nodes = [], byAsn = {}, byName = {}, edges = {};

	nodes.push({ id: 'self', label: _('this router'), sub: d.status.overlay, asn: d.status.asn, self: true });
	d.members.forEach(function(m) {
		if (m && m.name)
			nodes.push({ id: 'm:' + m.name, label: m.name, sub: m.overlay, asn: m.asn, member: m });
	});
	nodes.forEach(function(n) {
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
			edges[key] = { a: a, b: b, kind: kind };
	}

	nodes.forEach(function(n) {
		var m = n.member;
		if (m && ((isObject(m.path) && m.path.direct) || (isObject(m.bgp) && m.bgp.state == 'Established')))
			addEdge(nodes[0], n, 'direct');
	});

	d.routes.forEach(function(r) {
		var paths = [ r.best ].concat(Array.isArray(r.alternatives) ? r.alternatives : []);
		paths.forEach(function(p) {
			if (!isObject(p))
				return;
			var seq = asSequence(p.as_path);
			for (var i = 0; i + 1 < seq.length; i++)
				if (seq[i] != null && seq[i + 1] != null)
					addEdge(byAsn[seq[i]], byAsn[seq[i + 1]], 'reported');
		});
	});

	return { nodes: nodes, byAsn: byAsn, byName: byName, edges: Object.keys(edges).map(function(k) { return edges[k]; }) };
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

function S(tag, attrs, children) {
	var el = document.createElementNS(SVG_NS, tag);
	Object.keys(attrs || {}).forEach(function(k) {
		var v = attrs[k];
		if (v == null)
			return;
		if (typeof v == 'function')
			el.addEventListener(k, v);
		else
			el.setAttribute(k, String(v));
	});
	(children || []).forEach(function(c) {
		el.appendChild(typeof c == 'string' ? document.createTextNode(c) : c);
	});
	return el;
}

function nodeColor(n) {
	if (n.self)
		return COLOR_SELF;
	var m = n.member;
	if (isObject(m.bgp) && m.bgp.state == 'Established')
		return COLOR_UP;
	if (isObject(m.path))
		return COLOR_TRANSIT;
	return COLOR_DOWN;
}

function renderMap(d, selected, onSelect) {
	var topo = topology(d);
	var width = 640, height = 420, cx = width / 2, cy = height / 2 - 10;
	var radius = topo.nodes.length > 1 ? Math.min(150, 40 + 25 * topo.nodes.length) : 0;
	var pos = {};

	topo.nodes.forEach(function(n, i) {
		var angle = -Math.PI / 2 + 2 * Math.PI * i / topo.nodes.length;
		pos[n.id] = { x: cx + radius * Math.cos(angle), y: cy + radius * Math.sin(angle) };
	});

	var edges = topo.edges.map(function(e) {
		var a = pos[e.a.id], b = pos[e.b.id];
		return S('line', {
			'x1': a.x, 'y1': a.y, 'x2': b.x, 'y2': b.y,
			'stroke': 'currentColor',
			'stroke-width': e.kind == 'direct' ? 2.5 : 1.5,
			'stroke-dasharray': e.kind == 'direct' ? null : '5 4',
			'opacity': e.kind == 'direct' ? 0.8 : 0.5
		}, [ S('title', {}, [ e.kind == 'direct' ? _('tunnel of this router') : _('tunnel a member reports') ]) ]);
	});

	var highlight = [];
	var path = selected ? pathTo(d, topo, selected) : [];
	for (var i = 0; i + 1 < path.length; i++) {
		var a = pos[path[i]], b = pos[path[i + 1]];
		highlight.push(S('line', {
			'x1': a.x, 'y1': a.y, 'x2': b.x, 'y2': b.y,
			'stroke': COLOR_PATH, 'stroke-width': 7, 'stroke-linecap': 'round', 'opacity': 0.75
		}));
	}

	var nodes = topo.nodes.map(function(n) {
		var p = pos[n.id];
		var isSelected = n.member && n.member.name == selected;
		return S('g', {
			'style': n.member ? 'cursor:pointer' : null,
			'click': n.member ? function() { onSelect(n.member.name); } : null
		}, [
			S('title', {}, [ n.self ? _('this router') : natText(n.member.nat) ]),
			S('circle', {
				'cx': p.x, 'cy': p.y, 'r': n.self ? 17 : 14,
				'fill': nodeColor(n),
				'stroke': isSelected ? COLOR_PATH : 'currentColor',
				'stroke-width': isSelected ? 4 : 1
			}),
			S('text', { 'x': p.x, 'y': p.y + 32, 'text-anchor': 'middle', 'fill': 'currentColor', 'font-size': 13, 'font-weight': n.self ? 'bold' : null }, [ n.label ]),
			S('text', { 'x': p.x, 'y': p.y + 46, 'text-anchor': 'middle', 'fill': 'currentColor', 'font-size': 11, 'opacity': 0.7 }, [ n.sub || '' ])
		]);
	});

	var svg = S('svg', {
		'viewBox': '0 0 %d %d'.format(width, height),
		'width': '100%',
		'style': 'max-width:%dpx;height:auto;display:block'.format(width),
		'role': 'img'
	}, [ S('g', {}, edges), S('g', {}, highlight), S('g', {}, nodes) ]);

	var legend = E('p', { 'style': 'font-size:90%' }, [
		E('span', { 'style': 'color:' + COLOR_UP }, '●'), ' ', _('BGP up'), ' \xa0 ',
		E('span', { 'style': 'color:' + COLOR_TRANSIT }, '●'), ' ', _('reached through others'), ' \xa0 ',
		E('span', { 'style': 'color:' + COLOR_DOWN }, '●'), ' ', _('unreachable'), ' \xa0 ',
		'━ ', _('tunnel of this router'), ' \xa0 ',
		'╌ ', _('tunnel a member reports'), ' \xa0 ',
		E('span', { 'style': 'color:' + COLOR_PATH }, '━'), ' ',
		selected ? _('current path to %s').format(selected) : _('click a member to see the path to it')
	]);

	return E('div', {}, [ svg, legend ]);
}

/* Sections */

function renderConsoles(d) {
	var x = d.exit;
	if (!x)
		return E('p', {}, E('em', {}, _('meshd did not say which consoles it found (is it older than this page?).')));
	var headers = [ _('Console'), _('Made by'), _('Game exit'), _('Public address'), _('NAT type') ];
	var consoles = Array.isArray(x.consoles) ? x.consoles : [];
	var rows = consoles.map(function(c) {
		return row(headers, [
			E('span', {}, [
				E('strong', {}, c.ip),
				E('br'),
				E('small', {}, [
					c.mac || '',
					c.mac ? ' · ' : '',
					(c.found == 'listed') ? _('listed in the settings') : _('found on the LAN')
				])
			]),
			VENDORS[c.vendor] || null,
			consoleExitText(c),
			c.public || null,
			consoleNatText(c)
		]);
	});
	return table(headers, rows, _('No console found on the LAN. PlayStations, Xboxes and Nintendo Switches are found by their MAC address; list others in Configuration > Game exit.'));
}

function renderExits(d) {
	var x = d.exit;
	if (!x)
		return '';
	var headers = [ _('Game exit'), _('Public address'), _('Load'), _('Hops'), _('New consoles') ];
	var exits = Array.isArray(x.exits) ? x.exits : [];
	var rows = exits.map(function(e) {
		return row(headers, [
			E('span', {}, [
				e.local ? E('em', {}, _('this router')) : E('strong', {}, e.name),
				E('br'),
				E('small', {}, e.overlay || '')
			]),
			e.public || null,
			isNumber(e.load) ? ((e.load == 1) ? _('1 console') : _('%d consoles').format(e.load)) : null,
			(!e.local && isNumber(e.hops)) ? String(e.hops) : null,
			e.best ? E('strong', {}, _('get this one')) : ''
		]);
	});
	return E('div', {}, [
		x.offered ? E('p', {}, E('strong', {}, _('This router is a game exit at %s.').format(x.offered))) : '',
		table(headers, rows, _('No game exit in the mesh: consoles play through this home\'s own internet.'))
	]);
}

function renderNode(d) {
	var s = d.status, nat = d.nat;
	var announce = Array.isArray(s.announce) ? s.announce.join(', ') : '';
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
		E('tr', { 'class': 'tr' }, [ E('td', { 'class': 'td left', 'width': '33%' }, _('Overlay address')), E('td', { 'class': 'td left' }, s.overlay || none()) ]),
		E('tr', { 'class': 'tr' }, [ E('td', { 'class': 'td left' }, _('AS number')), E('td', { 'class': 'td left' }, (s.asn != null) ? String(s.asn) : none()) ]),
		E('tr', { 'class': 'tr' }, [ E('td', { 'class': 'td left' }, _('Announced prefixes')), E('td', { 'class': 'td left' }, announce || none()) ]),
		E('tr', { 'class': 'tr' }, [ E('td', { 'class': 'td left' }, _('Mesh port')), E('td', { 'class': 'td left' }, (s.listen_port != null) ? _('UDP %d').format(s.listen_port) : none()) ]),
		E('tr', { 'class': 'tr' }, [ E('td', { 'class': 'td left' }, _('Public key')), E('td', { 'class': 'td left' }, s.public_key ? E('code', {}, s.public_key) : none()) ]),
		E('tr', { 'class': 'tr' }, [ E('td', { 'class': 'td left' }, _('NAT type')), E('td', { 'class': 'td left' }, [
			E('strong', {}, natText(nat)),
			natDetail.length ? E('br') : '',
			natDetail.length ? E('small', {}, natDetail.join(' · ')) : ''
		]) ]),
		E('tr', { 'class': 'tr' }, [ E('td', { 'class': 'td left' }, _('LAN discovery')), E('td', { 'class': 'td left' }, discoveryText(s.discovery)) ]),
		E('tr', { 'class': 'tr' }, [ E('td', { 'class': 'td left' }, _('Version')), E('td', { 'class': 'td left' }, s.version || none()) ])
	]);
}

// LAN discovery: what is relayed, and what it did.
function discoveryText(d) {
	if (!isObject(d))
		return none();
	if (!d.enabled)
		return E('em', {}, _('off: consoles find only this home\'s consoles on the LAN'));
	var what = (Array.isArray(d.ports) ? d.ports : []).map(function(p) { return String(p.port); });
	var head = _('relayed on %s, ports %s').format(d.interface || '?', what.join(', '));
	if (d.capture != 'open')
		return E('span', {}, [ E('strong', {}, _('not running')), ' · ', E('small', {}, [ d.capture, ' · ', head ]) ]);
	var t = isObject(d.total) ? d.total : {};
	var dropped = (t.dropped_rate || 0) + (t.dropped_rate_in || 0);
	var refused = (t.forged || 0) + (t.replayed || 0);
	var counts = _('%d sent to friends, %d from friends').format(t.relayed || 0, t.emitted || 0);
	if (dropped)
		counts += ' · ' + _('%d over the rate cap').format(dropped);
	if (refused)
		counts += ' · ' + _('%d forged or replayed').format(refused);
	return E('span', {}, [ E('strong', {}, head), E('br'), E('small', { 'title': _('Discovery packets relayed from this LAN to friends, and from friends re-sent on this LAN') }, counts) ]);
}

function renderMembers(d, selected, onSelect) {
	var headers = [ _('Member'), _('Reached'), _('NAT type'), _('Handshake'), _('BGP'), _('BFD'), _('RTT') ];
	var rows = d.members.map(function(m) {
		var endpoint = m.endpoint ? m.endpoint + (m.endpoint_confirmed === false ? ' ?' : '') : null;
		return row(headers, [
			E('span', {}, [
				E('strong', {}, m.name),
				E('br'),
				E('small', {}, [ m.overlay || '', ' · AS', (m.asn != null) ? String(m.asn) : '?', endpoint ? ' · ' + endpoint : '' ])
			]),
			reached(m),
			isObject(m.nat) ? natText(m.nat) : null,
			isNumber(m.handshake_age_s) ? _('%s ago').format(seconds(m.handshake_age_s)) : _('never'),
			bgpText(m),
			bfdText(m),
			isNumber(m.rtt_ms) ? _('%d ms').format(m.rtt_ms) : null
		], {
			'class': 'tr' + (m.name == selected ? ' cbi-rowstyle-2' : ''),
			'style': 'cursor:pointer' + (m.name == selected ? ';outline:2px solid ' + COLOR_PATH : ''),
			'click': function() { onSelect(m.name); }
		});
	});
	return table(headers, rows, _('No members configured.'));
}

function renderRoutes(d) {
	var headers = [ _('Prefix'), _('Next hop'), _('AS path'), _('Why this path'), _('Other paths') ];
	var rows = d.routes.map(function(r) {
		var best = isObject(r.best) ? r.best : {};
		var hop = (best.via == 'local') ? E('em', {}, _('this router')) : best.via;
		var alternatives = (Array.isArray(r.alternatives) ? r.alternatives : []).map(function(a) {
			return E('div', {}, _('via %s [%s]: lost on %s').format(a.via || '?', a.as_path || '', a.lost || '?'));
		});
		return row(headers, [
			r.prefix,
			hop ? E('span', {}, [ hop, best.next_hop ? E('small', {}, [ ' (' + best.next_hop + ')' ]) : '' ]) : null,
			best.as_path ? E('code', {}, best.as_path) : (best.via == 'local' ? E('em', {}, _('local')) : null),
			best.reason ? best.reason + ((r.ecmp > 1) ? ' · ' + _('%d equal paths').format(r.ecmp) : '') : null,
			alternatives.length ? E('div', {}, alternatives) : null
		]);
	});
	return table(headers, rows, _('No routes.'));
}

return view.extend({
	load: function() {
		return fetchAll();
	},

	render: function(data) {
		this.data = data;
		this.selected = null;
		this.root = E('div', { 'class': 'cbi-map' }, [
			E('h2', {}, _('Game Mesh')),
			E('div', { 'class': 'cbi-map-descr' }, _('Your consoles and the game exit each one plays through, the routers of the mesh, how this router reaches each of them, and the routes BGP chose. Refreshed every %d seconds.').format(REFRESH_SECONDS)),
			E('div', { 'class': 'cbi-section' }, [ E('h3', {}, _('Consoles')), E('div', { 'id': 'meshd-consoles' }) ]),
			E('div', { 'class': 'cbi-section' }, [ E('h3', {}, _('Game exits')), E('div', { 'id': 'meshd-exits' }) ]),
			E('div', { 'class': 'cbi-section' }, [ E('h3', {}, _('This router')), E('div', { 'id': 'meshd-node' }) ]),
			E('div', { 'class': 'cbi-section' }, [ E('h3', {}, _('Map')), E('div', { 'id': 'meshd-map' }) ]),
			E('div', { 'class': 'cbi-section' }, [ E('h3', {}, _('Members')), E('div', { 'id': 'meshd-members' }) ]),
			E('div', { 'class': 'cbi-section' }, [ E('h3', {}, _('Routes')), E('div', { 'id': 'meshd-routes' }) ])
		]);
		this.redraw();

		poll.add(L.bind(function() {
			return fetchAll().then(L.bind(function(d) {
				this.data = d;
				this.redraw();
			}, this));
		}, this), REFRESH_SECONDS);

		return this.root;
	},

	select: function(name) {
		this.selected = (this.selected == name) ? null : name;
		this.redraw();
	},

	redraw: function() {
		var d = this.data, root = this.root;
		var onSelect = L.bind(this.select, this);

		if (!d.status) {
			dom.content(root.querySelector('#meshd-consoles'), E('p', {}, E('em', {},
				_('meshd is not running, or it has not registered its ubus object yet. Check Services > Game Mesh > Configuration (enabled, overlay address, AS number) and the system log.'))));
			dom.content(root.querySelector('#meshd-exits'), '');
			dom.content(root.querySelector('#meshd-node'), '');
			dom.content(root.querySelector('#meshd-map'), '');
			dom.content(root.querySelector('#meshd-members'), '');
			dom.content(root.querySelector('#meshd-routes'), '');
			return;
		}
		if (this.selected && !d.members.some(function(m) { return m.name == this.selected; }, this))
			this.selected = null;

		dom.content(root.querySelector('#meshd-consoles'), renderConsoles(d));
		dom.content(root.querySelector('#meshd-exits'), renderExits(d));
		dom.content(root.querySelector('#meshd-node'), renderNode(d));
		dom.content(root.querySelector('#meshd-map'), renderMap(d, this.selected, onSelect));
		dom.content(root.querySelector('#meshd-members'), renderMembers(d, this.selected, onSelect));
		dom.content(root.querySelector('#meshd-routes'), renderRoutes(d));
	},

	handleSaveApply: null,
	handleSave: null,
	handleReset: null
});
