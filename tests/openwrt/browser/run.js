// The browser test of luci-app-meshd: headless Chromium (Debian's
// `chromium`, driven by playwright-core) renders the status and the
// configuration view at desktop and phone width, light and dark, and checks
// what a person would see.
//
// The views run against a STAND-IN for LuCI (stand-in/luci.js: view, form,
// rpc, uci, poll, dom, ui, E(); stand-in/theme.css; stand-in/fake-rpcd.js
// for ubus and rpcd's uci), not LuCI itself: LuCI's client runtime is not
// packaged anywhere this project installs from. The stand-in keeps LuCI's
// API and the behaviour the views rely on (see the top of stand-in/luci.js).
//
// usage: node run.js [--screenshots DIR] [--break NAME] [--prove]
//   --screenshots DIR  write status-desktop.png, status-phone.png,
//                      status-dark.png, status-invite.png, status-join.png,
//                      status-phone-invite.png, config-desktop.png,
//                      config-phone.png
//   --break NAME       serve the views with one deliberate fault (see
//                      BREAKS): the checks it names must fail
//   --prove            run every --break in turn and report whether each
//                      made its checks fail (how each check was proven)
// env: CHROMIUM (default /usr/bin/chromium)
// Prints one line per check and "N passed, N failed"; exits 1 on a failure.
'use strict';

const fs = require('fs');
const path = require('path');
const { chromium } = require('playwright-core');

const HERE = __dirname;
const REPO = path.resolve(HERE, '../../..');
const RESOURCES = path.join(REPO, 'openwrt/luci-app-meshd/htdocs/luci-static/resources');
const SAMPLE = JSON.parse(fs.readFileSync(path.join(REPO, 'tests/openwrt/status-sample.json'), 'utf8'));
// The pages as a person usually sees them: no join of this router under way
// (the sample's failed one is for the node checks of tests/openwrt_files.rs).
SAMPLE.invites.join = { state: 'none', inviter: null };
const DEFAULT_CONFIG = fs.readFileSync(path.join(REPO, 'openwrt/meshd/files/meshd.config'), 'utf8');

const args = process.argv.slice(2);
const opt = name => { const i = args.indexOf(name); return i >= 0 ? (args[i + 1] || true) : null; };
const SHOTS = opt('--screenshots');

const DESKTOP = { width: 1280, height: 900 };
const PHONE = { width: 390, height: 844 };
const MIN_TEXT_PX = 11;

// The default configuration as shipped, with a friend added as its comment
// shows: comments, blank lines and options left out must all survive.
const SHIPPED_CONFIG = DEFAULT_CONFIG + `
config member 'bob'
	option public_key 'xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg='
	option overlay '10.0.0.2'
	option asn '65002'
	list prefix '192.168.2.0/24'
	list endpoint 'bob.example.net:51820'
	option exit '1'
`;
// A file as uci writes it, every flag spelled out at its default, BFD off
// with its timers kept, a member with BFD off and its own interval.
const UCI_WRITTEN_CONFIG = `
config meshd 'main'
	option enabled '1'
	option overlay '10.0.0.1'
	option asn '65001'
	list announce '192.168.1.0/24'
	option bfd '0'
	option bfd_interval '10'
	option bfd_multiplier '4'
	option redundancy '1'
	option exit '0'
	option exit_all '0'
	option consoles 'auto'
	option discovery '1'
	option discovery_ssdp '1'
	option discovery_mdns '0'
	option log_level 'info'

config member 'carol'
	option enabled '1'
	option public_key 'HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw='
	option overlay '10.0.0.3'
	option asn '65003'
	list prefix '192.168.3.0/24'
	option bfd '0'
	option bfd_interval '20'
	option exit '0'
`;

const HINTS = {
	'00:04:1F:3A:7C:01': { name: 'PS5-Living', ipaddrs: [ '192.168.1.20' ] },
	'00:0D:3A:5E:11:02': { name: 'Xbox-Series-X', ipaddrs: [ '192.168.1.21' ] }
};

/* Deliberate faults: each makes the checks it names fail (--prove). */

const BREAKS = {
	'rebuild-every-poll': {
		file: 'status.js',
		from: 'morph(this.root, build(this.doc, this.state));',
		to: 'dom.content(this.root, Array.prototype.slice.call(build(this.doc, this.state).childNodes));',
		fails: [ 'status: a text selection, the focus and the scroll position survive two polls', 'status: a poll touches only the text that changed' ]
	},
	'fetch-twice-at-start': {
		file: 'status.js',
		from: 'if (Date.now() - this.fetchedAt < REFRESH_SECONDS * 500)',
		to: 'if (false)',
		fails: [ 'status: one ubus call per poll, none twice at start' ]
	},
	'labels-inside': {
		file: 'status.js',
		from: 'var cx = p.x + ux * reach, cy = p.y + uy * reach;',
		to: 'var cx = p.x, cy = p.y;',
		fails: [ 'status: no tunnel or highlighted path crosses a label' ]
	},
	'circle-in-member-order': {
		file: 'status.js',
		from: 'function circleOrder(ids, edges, previous) {',
		to: 'function circleOrder(ids, edges, previous) { return ids;',
		fails: [ 'status: the map is a square without crossings, drawn at its size' ]
	},
	'map-shrinks-on-phones': {
		file: 'status.js',
		from: 'var narrow = width < lay.minWidth;',
		to: 'var narrow = false;',
		fails: [ 'status at 320 px: the map becomes a list, no text under 11 px' ]
	},
	'no-hover': {
		file: 'status.js',
		from: "root.addEventListener('mouseover',",
		to: "root.addEventListener('no-mouseover',",
		fails: [ 'status: pointing at a map node shows its member\'s row' ]
	},
	'bare-symbols': {
		file: 'status.js',
		from: "return E('span', { 'class': 'meshd-help', 'title': why }, [ text ]);",
		to: "return E('span', { 'class': 'meshd-help' }, [ text ]);",
		fails: [ 'status: every symbol has a tooltip or a legend entry' ]
	},
	'dark-labels': {
		file: 'status.js',
		from: "'.meshd-svg text{fill:currentColor}",
		to: "'.meshd-svg text{fill:#333}",
		fails: [ 'status, dark: every text and node is legible' ]
	},
	'headings-over-nothing': {
		file: 'status.js',
		from: "E('h3', {}, [ _('meshd is not answering') ]),",
		to: "E('h3', {}, [ _('meshd is not answering') ]), E('h3', {}, [ _('Map') ]),",
		fails: [ 'status: with meshd down, it says what to do and shows no empty heading' ]
	},
	'small-print': {
		file: 'status.js',
		from: "'.meshd-status small,.meshd-status .meshd-muted{font-size:max(11px,.9em)}',",
		to: "'.meshd-status small,.meshd-status .meshd-muted{font-size:9px}',",
		fails: [ 'status at 390 px: no text under 11 px, nothing wider than the screen' ]
	},
	'status-script-error': {
		file: 'status.js',
		from: 'redraw: function() {',
		to: "redraw: function() { window.setTimeout(function() { throw new Error('deliberate'); }, 0);",
		fails: [ 'status: no script error' ]
	},
	'invite-button-dead': {
		file: 'status.js',
		from: 'return this.showInvite();',
		to: 'return;',
		fails: [ 'friends: Invite a friend makes a token, selected whole, still selected after polls' ]
	},
	'token-not-selected': {
		file: 'status.js',
		from: "'focus': function(ev) { ev.target.select(); },",
		to: '',
		fails: [ 'friends: Invite a friend makes a token, selected whole, still selected after polls' ]
	},
	'invite-errors-unsaid': {
		file: 'status.js',
		from: "say(msg, _('No invite made: %s').format(why), 'bad');",
		to: "say(msg, '', 'bad');",
		fails: [ 'friends: Invite a friend says why not in words (a taken name, a bad name, no address)' ]
	},
	'join-not-followed': {
		file: 'status.js',
		from: 'follow(0);',
		to: '',
		fails: [ 'friends: Join a mesh follows the join until the inviter is a member' ]
	},
	'pending-rebuilt-every-poll': {
		file: 'status.js',
		from: "'data-key': 'i:' + p.name,",
		to: "'data-key': 'i:' + p.name + ':' + p.expires_in_s,",
		fails: [ 'friends: the invites not used yet are listed, with their time left updated in place' ]
	},
	'dialog-wider-than-phone': {
		file: 'status.js',
		from: "'.meshd-dialog textarea.meshd-token{display:block;width:100%;",
		to: "'.meshd-dialog textarea.meshd-token{display:block;width:520px;",
		fails: [ 'friends at 390 px: the dialogs fit the screen, the whole token shows, no text under 11 px' ]
	},
	'dialog-dark-error': {
		file: 'status.js',
		from: '--meshd-bad:#ff8a80',
		to: '--meshd-bad:#8b1a1a',
		fails: [ 'friends, dark: the dialogs\' words, errors included, are legible' ]
	},
	'flags-dropped-at-default': {
		file: 'config.js',
		from: '\to.rmempty = false;\n\to.write = function',
		to: '\to.write = function',
		fails: [ 'config: saving the untouched shipped file leaves it byte for byte', 'config: saving an untouched file uci wrote leaves it byte for byte' ]
	},
	'hidden-options-removed': {
		file: 'config.js',
		from: '\to.retain = true;',
		to: '',
		fails: [ 'config: saving an untouched file uci wrote leaves it byte for byte' ]
	},
	'bfd-timers-always-shown': {
		file: 'config.js',
		from: "\t\tdependsOn(o, { bfd: '0', '!reverse': true });\n",
		to: '\n',
		fails: [ 'config: options that depend on a switch are hidden while it is off' ]
	},
	'overlay6-undescribed': {
		file: 'config.js',
		from: "_('Optional: this router\\'s IPv6 address inside the mesh, e.g. fd00::1; unique per home.')",
		to: "''",
		fails: [ 'config: every field has a description' ]
	},
	'changes-not-written': {
		file: 'config.js',
		from: 'if (cval == value || (cval == null && value == this.default))',
		to: 'if (true)',
		fails: [ 'config: a change is written, and only it' ]
	},
	'small-descriptions': {
		file: 'config.js',
		from: "'.meshd-key{",
		to: "'.cbi-value-description{font-size:10px}.meshd-key{",
		fails: [ 'config at 390 px: no text under 11 px, nothing wider than the screen' ]
	},
	'config-script-error': {
		file: 'config.js',
		from: 'return m.render().then(function(node) {',
		to: "window.setTimeout(function() { throw new Error('deliberate'); }, 0); return m.render().then(function(node) {",
		fails: [ 'config: no script error' ]
	},
	'inputs-at-theme-width': {
		file: 'config.js',
		edits: [
			[ "input.classList.add('meshd-key');", '' ],
			[ "'#cbi-meshd .cbi-value-field .cbi-input-text,#cbi-meshd .cbi-value-field .cbi-input-select{width:100%;max-width:34em;box-sizing:border-box}',", '' ]
		],
		fails: [ 'config: the member dialog shows a whole 44-character key', 'config: every value is shown whole, every option fits its row' ]
	}
};

/* The page */

function pageHtml(viewName) {
	return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>luci-app-meshd on a LuCI stand-in</title>
<script>document.documentElement.setAttribute('data-darkmode', matchMedia('(prefers-color-scheme: dark)').matches ? 'true' : 'false');</script>
<link rel="stylesheet" href="/stand-in/theme.css">
</head><body>
<header>OpenWrt <small>Services › Game Mesh (luci-app-meshd on a stand-in for LuCI)</small></header>
<div id="maincontent"><div id="view"></div></div>
<script src="/stand-in/luci.js"></script>
<script src="/stand-in/fake-rpcd.js"></script>
<script>L.boot('${viewName}');</script>
</body></html>`;
}

function serve(fault) {
	return async route => {
		const url = new URL(route.request().url());
		const type = p => p.endsWith('.js') ? 'text/javascript' : p.endsWith('.css') ? 'text/css' : 'text/html';
		if (url.pathname == '/status' || url.pathname == '/config')
			return route.fulfill({ contentType: 'text/html', body: pageHtml('view.meshd.' + url.pathname.slice(1)) });
		if (url.pathname.startsWith('/stand-in/'))
			return route.fulfill({ contentType: type(url.pathname), body: fs.readFileSync(path.join(HERE, url.pathname)) });
		if (url.pathname.startsWith('/luci-static/resources/')) {
			const file = path.join(RESOURCES, url.pathname.slice('/luci-static/resources/'.length));
			if (!fs.existsSync(file))
				return route.fulfill({ status: 404, body: 'not found' });
			let body = fs.readFileSync(file, 'utf8');
			if (fault && file.endsWith('/' + fault.file))
				for (const [ from, to ] of fault.edits || [ [ fault.from, fault.to ] ]) {
					if (!body.includes(from))
						throw new Error('--break: "' + from + '" is not in ' + fault.file);
					body = body.split(from).join(to);
				}
			return route.fulfill({ contentType: 'text/javascript', body });
		}
		return route.fulfill({ status: 404, body: 'not found' });
	};
}

async function open(browser, fault, what) {
	const context = await browser.newContext({
		viewport: what.viewport || DESKTOP,
		deviceScaleFactor: 1,
		colorScheme: what.dark ? 'dark' : 'light',
		reducedMotion: 'reduce'
	});
	const page = await context.newPage();
	const errors = [];
	page.on('pageerror', e => errors.push('during "' + Checks.current + '": ' + String(e && e.stack || e)));
	page.on('console', m => { if (m.type() == 'error') errors.push(m.text() + ' at ' + JSON.stringify(m.location())); });
	await page.route('http://luci.test/**', serve(fault));
	await page.addInitScript(init => { window.__rpcdInit = init; }, {
		doc: what.doc === undefined ? SAMPLE : what.doc, hints: HINTS, files: what.files || {}
	});
	// The page's clock says what the test says; its timers run as usual.
	page.now = Date.parse('2026-05-01T20:00:00Z');
	await page.clock.setFixedTime(page.now);
	await page.goto('http://luci.test/' + what.view);
	await ready(page);
	return { context, page, errors };
}

async function ready(page) {
	await page.waitForFunction(() => window.__viewReady || window.__viewError, null, { timeout: 10000 });
	const viewError = await page.evaluate(() => window.__viewError || null);
	if (viewError)
		throw new Error('the view failed: ' + viewError);
	// LuCI's poll keeps running, but ticks only when the test says.
	await page.evaluate(() => window.clearInterval(L.Poll.timer));
	await settle(page);
}

// Until the page has answered what it was doing (a round trip to the fake
// rpcd, a redraw).
async function settle(page) {
	await page.evaluate(() => new Promise(r => setTimeout(() => requestAnimationFrame(() => setTimeout(r, 0)), 10)));
}

// Two ticks of LuCI's 1 s poll, two seconds later: one refresh.
async function poll(page) {
	page.now += 2000;
	await page.clock.setFixedTime(page.now);
	await page.evaluate(() => { L.Poll.step(); L.Poll.step(); });
	await settle(page);
}

async function saveAndApply(page) {
	await page.evaluate(() => { window.__rpcd.calls = []; });
	await page.click('.cbi-page-actions .cbi-button-apply');
	await page.waitForFunction(() => window.__rpcd.calls.includes('uci.apply'), null, { timeout: 5000 });
	await settle(page);
}

/* Geometry and legibility, measured in the page */

function segmentHitsBox(s, b, margin) {
	// Liang-Barsky: clip the segment to the box grown by `margin`.
	const x0 = b.x - margin, x1 = b.x + b.w + margin, y0 = b.y - margin, y1 = b.y + b.h + margin;
	let t0 = 0, t1 = 1;
	const dx = s.x2 - s.x1, dy = s.y2 - s.y1;
	for (const [p, q] of [ [ -dx, s.x1 - x0 ], [ dx, x1 - s.x1 ], [ -dy, s.y1 - y0 ], [ dy, y1 - s.y1 ] ]) {
		if (p == 0) {
			if (q < 0)
				return false;
		}
		else {
			const r = q / p;
			if (p < 0) { if (r > t1) return false; if (r > t0) t0 = r; }
			else { if (r < t0) return false; if (r < t1) t1 = r; }
		}
	}
	return true;
}

function segmentsCross(a, b) {
	const shared = [ [ a.x1, a.y1 ], [ a.x2, a.y2 ] ].some(p => [ [ b.x1, b.y1 ], [ b.x2, b.y2 ] ].some(q => Math.hypot(p[0] - q[0], p[1] - q[1]) < 0.5));
	if (shared)
		return false;
	const orient = (px, py, qx, qy, rx, ry) => Math.sign((qx - px) * (ry - py) - (qy - py) * (rx - px));
	return orient(a.x1, a.y1, a.x2, a.y2, b.x1, b.y1) != orient(a.x1, a.y1, a.x2, a.y2, b.x2, b.y2) &&
		orient(b.x1, b.y1, b.x2, b.y2, a.x1, a.y1) != orient(b.x1, b.y1, b.x2, b.y2, a.x2, a.y2);
}

function mapGeometry(page) {
	return page.evaluate(() => {
		const svg = document.querySelector('.meshd-svg');
		if (!svg || !svg.checkVisibility())
			return null;
		const num = (el, a) => parseFloat(el.getAttribute(a));
		const lines = [ ...svg.querySelectorAll('g[data-key="edges"] line, g[data-key="paths"] line') ].map(l => ({
			x1: num(l, 'x1'), y1: num(l, 'y1'), x2: num(l, 'x2'), y2: num(l, 'y2'),
			width: parseFloat(getComputedStyle(l).strokeWidth), kind: l.getAttribute('class')
		}));
		const labels = [ ...svg.querySelectorAll('text') ].filter(t => t.textContent.trim()).map(t => {
			const b = t.getBBox();
			return { x: b.x, y: b.y, w: b.width, h: b.height, text: t.textContent };
		});
		const nodes = [ ...svg.querySelectorAll('g[data-key="nodes"] circle') ].map(c => ({
			x: num(c, 'cx'), y: num(c, 'cy'), r: num(c, 'r'), id: c.parentNode.getAttribute('data-key')
		}));
		const ctm = svg.getScreenCTM();
		const box = svg.getBoundingClientRect(), section = svg.parentNode.getBoundingClientRect();
		const label = svg.querySelector('text.meshd-label');
		return {
			lines, labels, nodes, ctm: { a: ctm.a, b: ctm.b, c: ctm.c, d: ctm.d },
			svg: { left: box.left, right: box.right, width: box.width },
			section: { left: section.left, right: section.right, width: section.width },
			labelPx: parseFloat(getComputedStyle(label).fontSize) * ctm.a
		};
	});
}

// Every visible piece of text: its size on screen and its contrast with
// what is behind it.
function textReport(page) {
	return page.evaluate(() => {
		function rgba(s) {
			const m = s.match(/rgba?\(([^)]+)\)/);
			if (!m)
				return null;
			const p = m[1].split(/[ ,/]+/).filter(Boolean).map(Number);
			return { r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1 };
		}
		function over(top, bottom) {
			const a = top.a + bottom.a * (1 - top.a);
			const mix = k => (top[k] * top.a + bottom[k] * bottom.a * (1 - top.a)) / (a || 1);
			return { r: mix('r'), g: mix('g'), b: mix('b'), a };
		}
		function background(el) {
			const layers = [];
			for (let e = el; e && e.nodeType == 1; e = e.parentNode) {
				const c = rgba(getComputedStyle(e).backgroundColor);
				if (c && c.a > 0)
					layers.push(c);
				if (c && c.a >= 1)
					break;
			}
			let bg = rgba(getComputedStyle(document.documentElement).backgroundColor) || { r: 255, g: 255, b: 255, a: 1 };
			if (bg.a == 0)
				bg = { r: 255, g: 255, b: 255, a: 1 };
			for (let i = layers.length - 1; i >= 0; i--)
				bg = over(layers[i], bg);
			return bg;
		}
		function lum(c) {
			const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
			return 0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b);
		}
		function contrast(fg, bg) {
			const c = over(fg, bg), a = lum(c), b = lum(bg);
			return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
		}
		function opacity(el) {
			let o = 1;
			for (let e = el; e && e.nodeType == 1; e = e.parentNode)
				o *= parseFloat(getComputedStyle(e).opacity);
			return o;
		}
		const out = [];
		const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
		for (let n = walker.nextNode(); n; n = walker.nextNode()) {
			const el = n.parentNode;
			if (!/\S/.test(n.data) || !el.checkVisibility || !el.checkVisibility({ checkOpacity: true, visibilityProperty: true }))
				continue;
			if (el.closest('title, style, script, option'))
				continue;
			const range = document.createRange();
			range.selectNodeContents(n);
			const r = range.getBoundingClientRect();
			if (r.width == 0 || r.height == 0)
				continue;
			const cs = getComputedStyle(el);
			const inSvg = el instanceof SVGElement;
			const scale = inSvg ? el.getScreenCTM().a : 1;
			const px = parseFloat(cs.fontSize) * scale;
			const fg = rgba(inSvg ? cs.fill : cs.color) || { r: 0, g: 0, b: 0, a: 1 };
			fg.a *= opacity(el);
			const bold = parseInt(cs.fontWeight, 10) >= 700;
			out.push({ text: n.data.trim().slice(0, 40), px, contrast: contrast(fg, background(el)), large: px >= 24 || (bold && px >= 18.66) });
		}
		const shapes = [ ...document.querySelectorAll('.meshd-svg g[data-key="nodes"] circle, .meshd-dot') ].filter(e => e.checkVisibility()).map(e => {
			const cs = getComputedStyle(e);
			const fill = rgba(e instanceof SVGElement ? cs.fill : cs.backgroundColor);
			return { what: e.getAttribute('class'), contrast: contrast(fill, background(e.parentNode)) };
		});
		return { texts: out, shapes, scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth };
	});
}

/* Checks */

class Checks {
	constructor() { this.results = []; }
	async run(name, fn) {
		Checks.current = name;
		if (process.env.DEBUG)
			console.error('… ' + name);
		try {
			await fn();
			this.results.push({ name, ok: true });
		}
		catch (e) {
			this.results.push({ name, ok: false, why: String(e && e.message || e) });
		}
	}
}

function assert(cond, why) {
	if (!cond)
		throw new Error(why);
}

function assertLegibleSmall(rep, where) {
	const small = rep.texts.filter(t => t.px < MIN_TEXT_PX - 0.01);
	assert(!small.length, where + ': text under ' + MIN_TEXT_PX + ' px: ' + JSON.stringify(small.slice(0, 5)));
	assert(rep.scrollWidth <= rep.innerWidth, where + ': the page is ' + rep.scrollWidth + ' px wide on a ' + rep.innerWidth + ' px screen');
}

// A screenshot: the whole page, the screen (`screen`), or one element.
async function shot(page, name, how) {
	if (!SHOTS || typeof SHOTS != 'string')
		return;
	fs.mkdirSync(SHOTS, { recursive: true });
	const file = path.join(SHOTS, name);
	if (how && how.element)
		await page.locator(how.element).screenshot({ path: file, animations: 'disabled' });
	else
		await page.screenshot({ path: file, fullPage: !(how && how.screen), animations: 'disabled' });
}

// The sample as it is two seconds later: ages and counters moved on.
function later(doc, seconds) {
	const d = JSON.parse(JSON.stringify(doc));
	for (const m of d.members) {
		if (m.handshake_age_s != null)
			m.handshake_age_s = Math.round((m.handshake_age_s + seconds) * 10) / 10;
		if (m.bgp && m.bgp.uptime_s != null)
			m.bgp.uptime_s += seconds;
		m.rx_packets += 100 * seconds;
	}
	for (const c of d.exit.consoles)
		if (c.exit_since_s != null)
			c.exit_since_s = Math.round((c.exit_since_s + seconds) * 10) / 10;
	d.discovery.total.relayed += 1;
	return d;
}

async function statusChecks(browser, fault, checks) {
	const { context, page, errors } = await open(browser, fault, { view: 'status' });
	const calls = () => page.evaluate(() => window.__rpcd.calls.filter(c => c == 'meshd.status').length);

	await checks.run('status: one ubus call per poll, none twice at start', async () => {
		const atStart = await calls();
		assert(atStart == 1, 'meshd status was called ' + atStart + ' times at start');
		await poll(page);
		assert(await calls() == 2, 'one poll made ' + (await calls() - 1) + ' calls');
	});

	await checks.run('status: a poll touches only the text that changed', async () => {
		await page.evaluate(() => {
			window.__mutations = [];
			new MutationObserver(rs => window.__mutations.push(...rs.map(r => r.type + ' ' + (r.target.nodeName || '')))).observe(document.getElementById('view'), { subtree: true, childList: true, attributes: true, characterData: true });
		});
		await poll(page);
		const same = await page.evaluate(() => window.__mutations.splice(0));
		assert(same.length == 0, 'a poll with the same document changed the page: ' + same.slice(0, 5).join(', '));
		await page.evaluate(doc => { window.__rpcd.doc = doc; }, later(SAMPLE, 2));
		await poll(page);
		const changed = await page.evaluate(() => window.__mutations.splice(0));
		assert(changed.length > 0, 'the new document changed nothing on the page');
		const structural = changed.filter(m => !m.startsWith('characterData'));
		assert(!structural.length, 'a poll replaced elements: ' + structural.slice(0, 5).join(', '));
	});

	await checks.run('status: a text selection, the focus and the scroll position survive two polls', async () => {
		await page.click('.meshd-svg g[data-member="r4"] circle');
		await page.focus('.meshd-svg g[data-member="r2"]');
		const key = await page.evaluate(() => {
			const code = document.querySelector('#meshd-node tr[data-key="key"] code');
			const range = document.createRange();
			range.selectNodeContents(code);
			getSelection().removeAllRanges();
			getSelection().addRange(range);
			window.scrollTo(0, 420);
			return getSelection().toString();
		});
		assert(key.length == 44, 'could not select the public key: ' + JSON.stringify(key));
		const before = await page.evaluate(() => document.querySelector('#meshd-members tr[data-member="r2"] td:nth-child(4)').textContent);
		for (const s of [ 4, 6 ]) {
			await page.evaluate(doc => { window.__rpcd.doc = doc; }, later(SAMPLE, s));
			await poll(page);
		}
		const after = await page.evaluate(() => ({
			selection: getSelection().toString(),
			connected: getSelection().rangeCount > 0 && getSelection().getRangeAt(0).startContainer.isConnected,
			focus: document.activeElement && document.activeElement.getAttribute('data-member'),
			scroll: window.scrollY,
			selected: document.querySelector('.meshd-svg g.meshd-selected') && document.querySelector('.meshd-svg g.meshd-selected').getAttribute('data-member'),
			handshake: document.querySelector('#meshd-members tr[data-member="r2"] td:nth-child(4)').textContent
		}));
		assert(after.handshake != before, 'the polls did not update the page (handshake still ' + before + ')');
		assert(after.selection == key && after.connected, 'the selection is now ' + JSON.stringify(after.selection));
		assert(after.focus == 'r2', 'the focus moved to ' + after.focus);
		assert(after.scroll == 420, 'the page scrolled to ' + after.scroll);
		assert(after.selected == 'r4', 'the selected map node is now ' + after.selected);
	});

	await checks.run('status: no tunnel or highlighted path crosses a label', async () => {
		await page.evaluate(() => getSelection().removeAllRanges());
		const g = await mapGeometry(page);
		assert(g, 'no map drawn');
		assert(g.lines.some(l => l.kind.includes('meshd-pathseg')), 'no highlighted path (r4 is selected)');
		const hits = [];
		for (const l of g.lines)
			for (const b of g.labels)
				if (segmentHitsBox(l, b, l.width / 2 + 1))
					hits.push(l.kind + ' through "' + b.text + '"');
		for (let i = 0; i < g.labels.length; i++) {
			for (let j = i + 1; j < g.labels.length; j++) {
				const a = g.labels[i], b = g.labels[j];
				if (a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h)
					hits.push('"' + a.text + '" over "' + b.text + '"');
			}
			for (const n of g.nodes) {
				const b = g.labels[i];
				const dx = Math.max(b.x - n.x, 0, n.x - (b.x + b.w)), dy = Math.max(b.y - n.y, 0, n.y - (b.y + b.h));
				if (dx * dx + dy * dy < n.r * n.r)
					hits.push('"' + b.text + '" over node ' + n.id);
			}
		}
		assert(!hits.length, hits.join('; '));
	});

	await checks.run('status: the map is a square without crossings, drawn at its size', async () => {
		const g = await mapGeometry(page);
		assert(g.nodes.length == 4, g.nodes.length + ' nodes');
		const edges = g.lines.filter(l => l.kind.includes('meshd-edge'));
		for (let i = 0; i < edges.length; i++)
			for (let j = i + 1; j < edges.length; j++)
				assert(!segmentsCross(edges[i], edges[j]), 'tunnels cross: ' + JSON.stringify([ edges[i], edges[j] ]));
		// The four tunnels R1-R2, R2-R4, R4-R3, R3-R1 are the sides of a square.
		const len = edges.map(e => Math.hypot(e.x2 - e.x1, e.y2 - e.y1));
		assert(Math.max(...len) - Math.min(...len) < 1, 'sides of ' + len.map(Math.round).join(', '));
		const c = g.nodes, d1 = Math.hypot(c[0].x - c[2].x, c[0].y - c[2].y), d2 = Math.hypot(c[1].x - c[3].x, c[1].y - c[3].y);
		assert(Math.abs(d1 - d2) < 1, 'diagonals of ' + Math.round(d1) + ' and ' + Math.round(d2));
		assert(Math.abs(g.ctm.a - g.ctm.d) < 1e-6 && Math.abs(g.ctm.b) < 1e-6 && Math.abs(g.ctm.c) < 1e-6, 'drawn stretched: ' + JSON.stringify(g.ctm));
		assert(Math.abs(g.labelPx - 15) < 1, 'labels drawn at ' + g.labelPx.toFixed(1) + ' px, not their 15 px');
		const gaps = [ g.svg.left - g.section.left, g.section.right - g.svg.right ];
		assert(Math.abs(gaps[0] - gaps[1]) < 2, 'the map is not centred: ' + gaps.map(Math.round).join(' / '));
		assert(g.svg.width >= 0.45 * g.section.width, 'the map uses ' + Math.round(g.svg.width) + ' of ' + Math.round(g.section.width) + ' px');
	});

	await checks.run('status: pointing at a map node shows its member\'s row', async () => {
		await page.hover('.meshd-svg g[data-member="r3"] circle');
		await settle(page);
		const r = await page.evaluate(() => ({
			row: document.querySelector('#meshd-members tr[data-member="r3"]').classList.contains('meshd-hover'),
			others: document.querySelectorAll('#meshd-members tr.meshd-hover').length,
			info: document.querySelector('.meshd-mapinfo').textContent
		}));
		assert(r.row && r.others == 1, 'the row of r3 is not marked (' + r.others + ' rows marked)');
		assert(r.info.startsWith('r3 · 10.0.0.3 · AS65003 — directly'), 'under the map: ' + r.info);
		await page.mouse.move(5, 5);
	});

	await checks.run('status: every symbol has a tooltip or a legend entry', async () => {
		const r = await page.evaluate(() => {
			const untitled = [ ...document.querySelectorAll('#view .meshd-dot, #view .meshd-help') ].filter(e => !e.getAttribute('title')).map(e => e.outerHTML.slice(0, 60));
			const svgUntitled = [ ...document.querySelectorAll('.meshd-svg g[data-key="nodes"] > g, .meshd-svg g[data-key="edges"] > line') ].filter(e => !(e.querySelector(':scope > title') || {}).textContent).length;
			const used = new Set([ ...document.querySelectorAll('.meshd-svg [class]') ].map(e => e.getAttribute('class').split(' ')).flat().filter(c => /^meshd-(n|edge)-/.test(c)));
			const legend = new Set([ ...document.querySelectorAll('.meshd-legend [class]') ].map(e => e.getAttribute('class').split(' ')).flat());
			const text = document.getElementById('view').textContent;
			return { untitled, svgUntitled, missing: [ ...used ].filter(c => !legend.has(c)), bareQuestion: /\d \?/.test(text) };
		});
		assert(!r.untitled.length, 'no tooltip: ' + r.untitled.join(' '));
		assert(!r.svgUntitled, r.svgUntitled + ' map nodes or tunnels without a tooltip');
		assert(!r.missing.length, 'not in the legend: ' + r.missing.join(', '));
		assert(!r.bareQuestion, 'a bare "?" is shown');
	});

	await checks.run('status: no script error', async () => {
		assert(!errors.length, errors.join('\n'));
	});

	await page.evaluate(() => { getSelection().removeAllRanges(); window.scrollTo(0, 0); document.activeElement && document.activeElement.blur && document.activeElement.blur(); });
	await shot(page, 'status-desktop.png');
	await context.close();

	// A phone.
	{
		const { context, page } = await open(browser, fault, { view: 'status', viewport: PHONE });
		await checks.run('status at 390 px: no text under 11 px, nothing wider than the screen', async () => {
			assertLegibleSmall(await textReport(page), 'status');
		});
		await shot(page, 'status-phone.png', { screen: true });
		await shot(page, 'status-phone-map.png', { element: '.cbi-section[data-key="s:map"]' });
		await context.close();
	}
	// The smallest phones: too narrow for the map at its size.
	{
		const { context, page } = await open(browser, fault, { view: 'status', viewport: { width: 320, height: 640 } });
		await checks.run('status at 320 px: the map becomes a list, no text under 11 px', async () => {
			const list = await page.evaluate(() => document.querySelector('.meshd-maplist').checkVisibility());
			assert(list, 'the map is not shown as a list');
			assertLegibleSmall(await textReport(page), 'status');
		});
		await context.close();
	}

	// Dark.
	{
		const { context, page } = await open(browser, fault, { view: 'status', dark: true });
		await checks.run('status, dark: every text and node is legible', async () => {
			await page.click('.meshd-svg g[data-member="r4"] circle');
			await settle(page);
			const rep = await textReport(page);
			const faint = rep.texts.filter(t => t.contrast < (t.large ? 3 : 4.5));
			assert(!faint.length, 'text below 4.5:1: ' + JSON.stringify(faint.slice(0, 5)));
			const shapes = rep.shapes.filter(s => s.contrast < 3);
			assert(!shapes.length, 'shapes below 3:1: ' + JSON.stringify(shapes.slice(0, 5)));
			const dark = await page.evaluate(() => document.documentElement.getAttribute('data-darkmode'));
			assert(dark == 'true', 'the stand-in theme is not dark');
		});
		await shot(page, 'status-dark.png');
		await context.close();
	}

	// meshd down, then up.
	{
		const { context, page } = await open(browser, fault, { view: 'status', doc: null });
		await checks.run('status: with meshd down, it says what to do and shows no empty heading', async () => {
			const heads = await page.evaluate(() => [ ...document.querySelectorAll('#view h3') ].map(h => h.textContent));
			assert(JSON.stringify(heads) == '["meshd is not answering"]', 'headings: ' + heads.join(', '));
			await page.evaluate(doc => { window.__rpcd.doc = doc; }, SAMPLE);
			await poll(page);
			const cards = await page.evaluate(() => document.querySelectorAll('#meshd-consoles .meshd-card').length);
			assert(cards == 4, 'after meshd came up: ' + cards + ' console cards');
		});
		await context.close();
	}
}

// The Friends card: Invite a friend and Join a mesh, against the fake
// rpcd's meshd (stand-in/fake-rpcd.js).
const dialog = {
	open: async (page, action) => {
		await page.click('#meshd-invites button[data-action="' + action + '"]', { timeout: 5000 });
		await settle(page);
	},
	visible: page => page.evaluate(() => document.body.classList.contains('modal-overlay-active') && document.querySelector('#modal_overlay .modal').checkVisibility()),
	title: page => page.evaluate(() => (document.querySelector('#modal_overlay .modal h4') || {}).textContent || ''),
	msg: page => page.evaluate(() => { const m = document.querySelector('#modal_overlay .meshd-msg'); return m ? { text: m.textContent, cls: m.className } : null; }),
	button: (page, text) => page.click('#modal_overlay .modal button:text-is("' + text + '")', { timeout: 5000 }),
	close: async page => {
		await page.evaluate(() => L.ui.hideModal());
		await settle(page);
	}
};

// The token field: shown, focused, selected whole, and the same node.
function tokenState(page) {
	return page.evaluate(() => {
		const a = document.getElementById('meshd-invite-token');
		if (!a)
			return null;
		return {
			value: a.value, shown: a.checkVisibility(), readOnly: a.readOnly, mark: a.__mark || null,
			focused: document.activeElement === a, start: a.selectionStart, end: a.selectionEnd,
			userSelect: getComputedStyle(a).userSelect, connected: a.isConnected
		};
	});
}

async function invite(page, name, seconds) {
	await dialog.open(page, 'invite');
	await page.fill('#meshd-invite-name', name);
	if (seconds)
		await page.selectOption('#meshd-invite-expires', String(seconds));
	await dialog.button(page, 'Make the invite');
	await settle(page);
	await settle(page);
}

async function friendsChecks(browser, fault, checks) {
	const { context, page, errors } = await open(browser, fault, { view: 'status' });
	const card = () => page.evaluate(() => ({
		pending: [ ...document.querySelectorAll('#meshd-invites .meshd-pending li') ].map(li => li.textContent),
		join: (document.querySelector('#meshd-invites p[data-key="join"]') || {}).textContent || ''
	}));
	const params = call => page.evaluate(call => window.__rpcd.params.filter(p => p.call == call).map(p => p.params), call);

	await checks.run('friends: the invites not used yet are listed, with their time left updated in place', async () => {
		let c = await card();
		assert(JSON.stringify(c.pending) == JSON.stringify([ 'bob · 23 h 59 min left', 'carol_2 · 43 min left' ]), 'listed: ' + JSON.stringify(c.pending));
		// meshd counts down: a minute later, the same rows say one minute less.
		await page.evaluate(() => { document.querySelectorAll('#meshd-invites .meshd-pending li').forEach(li => { li.__mark = li.textContent; }); });
		const doc = JSON.parse(JSON.stringify(SAMPLE));
		doc.invites.pending.forEach(p => { p.expires_in_s -= 60; });
		await page.evaluate(doc => { window.__rpcd.doc = doc; }, doc);
		await poll(page);
		const r = await page.evaluate(() => [ ...document.querySelectorAll('#meshd-invites .meshd-pending li') ].map(li => ({ text: li.textContent, mark: li.__mark || null })));
		assert(JSON.stringify(r.map(x => x.text)) == JSON.stringify([ 'bob · 23 h 58 min left', 'carol_2 · 42 min left' ]), 'after a minute: ' + JSON.stringify(r.map(x => x.text)));
		assert(r.every(x => x.mark), 'a poll replaced the rows instead of updating their text');
		await page.evaluate(doc => { window.__rpcd.doc = doc; }, SAMPLE);
		await poll(page);
	});

	await checks.run('friends: Invite a friend makes a token, selected whole, still selected after polls', async () => {
		await dialog.open(page, 'invite');
		assert(await dialog.visible(page), 'no dialog after a click on Invite a friend');
		const expires = await page.evaluate(() => document.getElementById('meshd-invite-expires').value);
		assert(expires == '86400', 'the invite lasts ' + expires + ' s by default, not 24 h');
		const options = await page.evaluate(() => [ ...document.querySelectorAll('#meshd-invite-expires option') ].map(o => o.textContent));
		assert(JSON.stringify(options) == '["1 hour","24 hours","7 days"]', 'durations: ' + options.join(', '));
		await page.fill('#meshd-invite-name', 'erin');
		await page.selectOption('#meshd-invite-expires', '604800');
		await dialog.button(page, 'Make the invite');
		await page.waitForSelector('#meshd-invite-token', { timeout: 5000 });
		await settle(page);
		const sent = await params('meshd.invite');
		assert(JSON.stringify(sent) == '[{"name":"erin","expires":604800}]', 'invite called with ' + JSON.stringify(sent));
		let t = await tokenState(page);
		assert(/^MESHD1[A-Z2-7]{100,}$/.test(t.value) && t.shown && t.readOnly, 'the token field: ' + JSON.stringify(t));
		assert(t.focused && t.start == 0 && t.end == t.value.length, 'the token is not selected whole: ' + JSON.stringify({ focused: t.focused, start: t.start, end: t.end, length: t.value.length }));
		assert(t.userSelect != 'none', 'the token cannot be selected');
		const words = await page.evaluate(() => document.querySelector('#modal_overlay .meshd-dialog').textContent);
		assert(words.includes('On your friend\'s router: Services › Game Mesh › Join a mesh, and paste this. Valid 7 days, once.'), 'what to do with it: ' + words);
		// The card lists the new invite at once.
		assert((await card()).pending.includes('erin · 7 d left'), 'the card does not list erin: ' + JSON.stringify((await card()).pending));
		// Copy: to the clipboard, or selected with a hint to press Ctrl+C.
		await dialog.button(page, 'Copy');
		await settle(page);
		const note = await page.evaluate(() => document.querySelector('#modal_overlay .meshd-copy span').textContent);
		assert(note == 'Copied.' || note.startsWith('Selected: press Ctrl+C'), 'after Copy: ' + JSON.stringify(note));
		await page.evaluate(() => { document.getElementById('meshd-invite-token').__mark = 'first'; });
		for (let i = 0; i < 2; i++)
			await poll(page);
		t = await tokenState(page);
		assert(t && t.mark == 'first' && t.connected && t.shown, 'a poll replaced or hid the token field');
		assert(t.focused && t.start == 0 && t.end == t.value.length, 'after two polls the token is no longer selected: ' + JSON.stringify({ focused: t.focused, start: t.start, end: t.end }));
	});
	await shot(page, 'status-invite.png', { screen: true });
	await dialog.close(page);

	await checks.run('friends: Invite a friend says why not in words (a taken name, a bad name, no address)', async () => {
		const before = (await params('meshd.invite')).length;
		await dialog.open(page, 'invite');
		await page.fill('#meshd-invite-name', 'bad name!');
		await dialog.button(page, 'Make the invite');
		await settle(page);
		let m = await dialog.msg(page);
		assert(m.text == '"bad name!" cannot be a router\'s name here: use 1 to 32 letters, digits or _, without spaces.' && m.cls.includes('meshd-bad'), 'a bad name: ' + JSON.stringify(m));
		assert((await params('meshd.invite')).length == before, 'a bad name was sent to meshd');
		for (const [ name, said ] of [
			[ 'r2', 'No invite made: There is a member \'r2\' already. Choose another name for your friend\'s router.' ],
			[ 'bob', 'No invite made: An invite for \'bob\' is pending. Choose another name for your friend\'s router.' ]
		]) {
			await page.fill('#meshd-invite-name', name);
			await dialog.button(page, 'Make the invite');
			await settle(page);
			m = await dialog.msg(page);
			assert(m.text == said && m.cls.includes('meshd-bad'), name + ': ' + JSON.stringify(m));
			assert(!(await tokenState(page)) && await dialog.visible(page), name + ': the dialog did not stay open with the error');
		}
		assert((await params('meshd.invite')).length == before + 2, 'meshd was not asked');
		// meshd knows no address of this router: the dialog asks for one.
		await page.evaluate(() => { window.__rpcd.addressKnown = false; });
		await page.fill('#meshd-invite-name', 'gina');
		await dialog.button(page, 'Make the invite');
		await settle(page);
		m = await dialog.msg(page);
		assert(m.text.startsWith('No invite made: meshd does not know this router\'s internet address yet') && !m.text.includes('--endpoint'), 'no endpoint: ' + JSON.stringify(m));
		assert(await page.evaluate(() => document.getElementById('meshd-invite-endpoint').checkVisibility()), 'no field for the address');
		await page.fill('#meshd-invite-endpoint', '203.0.113.7:51820');
		await dialog.button(page, 'Make the invite');
		await page.waitForSelector('#meshd-invite-token', { timeout: 5000 });
		const last = (await params('meshd.invite')).pop();
		assert(JSON.stringify(last) == '{"name":"gina","expires":86400,"endpoint":["203.0.113.7:51820"]}', 'invite called with ' + JSON.stringify(last));
		await page.evaluate(() => { window.__rpcd.addressKnown = true; });
	});
	await dialog.close(page);

	await checks.run('friends: Join a mesh follows the join until the inviter is a member', async () => {
		await dialog.open(page, 'join');
		assert(await dialog.title(page) == 'Join a mesh', 'no Join a mesh dialog');
		// Not a token: said at once, nothing sent.
		await page.fill('#meshd-join-token', 'hello');
		await dialog.button(page, 'Join');
		await settle(page);
		let m = await dialog.msg(page);
		assert(m.text == 'This is not an invite token: a token starts with MESHD1.', 'not a token: ' + JSON.stringify(m));
		// A token that a chat wrapped over two lines.
		const token = 'MESHD1' + 'QJ7K2MXV'.repeat(18);
		await page.evaluate(() => {
			window.__seen = [];
			const m = document.querySelector('#modal_overlay .meshd-msg');
			new MutationObserver(() => window.__seen.push(m.textContent)).observe(m, { subtree: true, childList: true, characterData: true });
		});
		await page.fill('#meshd-join-token', token.slice(0, 70) + '\n' + token.slice(70) + ' ');
		await dialog.button(page, 'Join');
		await page.waitForFunction(() => /^(Joined|Could not join)/.test(document.querySelector('#modal_overlay .meshd-msg').textContent), null, { timeout: 10000 });
		m = await dialog.msg(page);
		assert(m.text == 'Joined dave\'s mesh: it is a member now.' && m.cls.includes('meshd-good'), 'the join ended with ' + JSON.stringify(m));
		const seen = await page.evaluate(() => window.__seen);
		assert(seen.some(s => s.startsWith('Asking')) && seen.includes('dave\'s router said yes: each router adds the other as a member…'), 'progress shown: ' + JSON.stringify(seen));
		const sent = await params('meshd.join');
		assert(JSON.stringify(sent) == JSON.stringify([ { token } ]), 'join called with ' + JSON.stringify(sent));
		await settle(page);
		const after = await page.evaluate(() => !!document.querySelector('#meshd-members tr[data-member="dave"]'));
		assert(after, 'the Members table does not show dave after the join');
		assert((await card()).join == 'Joined dave\'s mesh: it is a member now.', 'the card says ' + JSON.stringify((await card()).join));
	});
	await shot(page, 'status-join.png', { screen: true });
	await dialog.close(page);

	await checks.run('friends: Join a mesh says why a join failed', async () => {
		await dialog.open(page, 'join');
		await page.fill('#meshd-join-token', 'MESHD1-not-base32');
		await dialog.button(page, 'Join');
		await settle(page);
		let m = await dialog.msg(page);
		assert(m.text == 'Not joined: not an invite token (MESHD1 and base32)' && m.cls.includes('meshd-bad'), 'a damaged token: ' + JSON.stringify(m));
		await page.fill('#meshd-join-token', 'MESHD1' + 'FAIL'.repeat(30));
		await dialog.button(page, 'Join');
		await page.waitForFunction(() => /^(Joined|Could not join)/.test(document.querySelector('#modal_overlay .meshd-msg').textContent), null, { timeout: 10000 });
		m = await dialog.msg(page);
		assert(m.text == 'Could not join dave\'s mesh: no answer from 198.51.100.5:51820 in 20 s' && m.cls.includes('meshd-bad'), 'a join with no answer: ' + JSON.stringify(m));
	});
	await dialog.close(page);

	await checks.run('friends: every new control and line explains itself', async () => {
		const bare = [];
		const look = () => page.evaluate(() => [ ...document.querySelectorAll('#meshd-invites button, #meshd-invites li, #meshd-invites p[data-key="join"], #modal_overlay .meshd-dialog input, #modal_overlay .meshd-dialog select, #modal_overlay .meshd-dialog textarea, #modal_overlay .meshd-dialog button') ]
			.filter(e => e.checkVisibility())
			.filter(e => {
				if (/^(BUTTON)$/.test(e.tagName) && e.closest('.right'))
					return false; // Cancel, Close, Make the invite, Join: their words say it
				const label = e.id && document.querySelector('label[for="' + e.id + '"]');
				const described = e.closest('.cbi-value') && e.closest('.cbi-value').querySelector('.cbi-value-description');
				return !e.getAttribute('title') && !(label && (described || e.tagName == 'TEXTAREA'));
			}).map(e => e.tagName + ' ' + (e.id || e.textContent.slice(0, 30))));
		bare.push(...await look());
		await dialog.open(page, 'invite');
		bare.push(...await look());
		await page.fill('#meshd-invite-name', 'frank');
		await dialog.button(page, 'Make the invite');
		await page.waitForSelector('#meshd-invite-token', { timeout: 5000 });
		bare.push(...await look());
		await dialog.close(page);
		await dialog.open(page, 'join');
		bare.push(...await look());
		await dialog.close(page);
		assert(!bare.length, 'no tooltip or label: ' + bare.join(', '));
	});

	await checks.run('friends: no script error', async () => {
		assert(!errors.length, errors.join('\n'));
	});
	await context.close();

	// A phone: the dialogs fit, the token shows whole.
	{
		const { context, page } = await open(browser, fault, { view: 'status', viewport: PHONE });
		await checks.run('friends at 390 px: the dialogs fit the screen, the whole token shows, no text under 11 px', async () => {
			const fits = () => page.evaluate(() => [ ...document.querySelectorAll('#modal_overlay .modal, #modal_overlay .modal *') ]
				.filter(e => e.checkVisibility()).filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
				.map(e => e.tagName + (e.id ? '#' + e.id : '') + ' ends at ' + Math.round(e.getBoundingClientRect().right)));
			await dialog.open(page, 'invite');
			let wide = await fits();
			assert(!wide.length, 'Invite a friend: ' + wide.slice(0, 4).join('; '));
			await page.fill('#meshd-invite-name', 'erin');
			await dialog.button(page, 'Make the invite');
			await page.waitForSelector('#meshd-invite-token', { timeout: 5000 });
			await settle(page);
			wide = await fits();
			assert(!wide.length, 'the token: ' + wide.slice(0, 4).join('; '));
			const area = await page.evaluate(() => { const a = document.getElementById('meshd-invite-token'); return { sw: a.scrollWidth, cw: a.clientWidth, sh: a.scrollHeight, ch: a.clientHeight }; });
			assert(area.sw <= area.cw + 1 && area.sh <= area.ch + 1, 'the token field scrolls: ' + JSON.stringify(area));
			assertLegibleSmall(await textReport(page), 'the token dialog');
			await shot(page, 'status-phone-invite.png', { screen: true });
			await dialog.close(page);
			await dialog.open(page, 'join');
			wide = await fits();
			assert(!wide.length, 'Join a mesh: ' + wide.slice(0, 4).join('; '));
			assertLegibleSmall(await textReport(page), 'the join dialog');
		});
		await context.close();
	}

	// Dark.
	{
		const { context, page } = await open(browser, fault, { view: 'status', dark: true });
		await checks.run('friends, dark: the dialogs\' words, errors included, are legible', async () => {
			const faint = async where => {
				const rep = await textReport(page);
				const f = rep.texts.filter(t => t.contrast < (t.large ? 3 : 4.5));
				assert(!f.length, where + ': text below 4.5:1: ' + JSON.stringify(f.slice(0, 5)));
			};
			await dialog.open(page, 'invite');
			await page.fill('#meshd-invite-name', 'r2');
			await dialog.button(page, 'Make the invite');
			await settle(page);
			assert((await dialog.msg(page)).text.startsWith('No invite made'), 'no error shown');
			await faint('the error');
			await page.fill('#meshd-invite-name', 'erin');
			await dialog.button(page, 'Make the invite');
			await page.waitForSelector('#meshd-invite-token', { timeout: 5000 });
			await settle(page);
			await faint('the token');
			const area = await page.evaluate(() => { const cs = getComputedStyle(document.getElementById('meshd-invite-token')); return cs.color + ' on ' + cs.backgroundColor; });
			assert(!/rgb\(0, 0, 0\) on rgb\(255, 255, 255\)|rgb\(255, 255, 255\) on rgb\(255, 255, 255\)/.test(area), 'the token field is not dark: ' + area);
		});
		await context.close();
	}
}

async function configChecks(browser, fault, checks) {
	const saveUntouched = async (files, name) => {
		const { context, page, errors } = await open(browser, fault, { view: 'config', files: { meshd: files } });
		await checks.run(name, async () => {
			await saveAndApply(page);
			const r = await page.evaluate(() => ({ file: window.__rpcd.files.meshd, committed: window.__rpcd.committed || [] }));
			assert(!r.committed.length, 'changes: ' + r.committed.join('; '));
			assert(r.file === files, 'the file changed');
			assert(!errors.length, errors.join('\n'));
		});
		return { context, page, errors };
	};

	await (await saveUntouched(UCI_WRITTEN_CONFIG, 'config: saving an untouched file uci wrote leaves it byte for byte')).context.close();
	const { context, page, errors } = await saveUntouched(SHIPPED_CONFIG, 'config: saving the untouched shipped file leaves it byte for byte');

	const tab = async name => {
		await page.click('.cbi-tabmenu li[data-tab="' + name + '"] a');
		await settle(page);
	};
	const shown = names => page.evaluate(names => names.map(n => {
		const row = document.querySelector('#cbi-meshd-main [data-name="' + n + '"]');
		return row ? row.checkVisibility() : null;
	}), names);

	await checks.run('config: a change is written, and only it', async () => {
		await tab('failover');
		await page.click('#cbid\\.meshd\\.main\\.bfd');
		await saveAndApply(page);
		const r = await page.evaluate(() => ({ file: window.__rpcd.files.meshd, committed: window.__rpcd.committed || [] }));
		assert(JSON.stringify(r.committed) == '["set main.bfd=\\"0\\""]', 'changes: ' + r.committed.join('; '));
		assert(/option bfd '0'/.test(r.file) && /option bfd_interval '10'/.test(r.file), 'the file now: ' + r.file);
		// Back to the shipped file for the checks below.
		await page.evaluate(text => { window.__rpcd.files.meshd = text; window.__rpcd.models = {}; window.__rpcd.committed = []; }, SHIPPED_CONFIG);
		await page.reload();
		await ready(page);
	});

	await checks.run('config: options that depend on a switch are hidden while it is off', async () => {
		const timers = [ 'bfd_interval', 'bfd_multiplier', 'bfd_max_detection', 'bfd_confirm', 'bfd_hold_down' ];
		await tab('failover');
		assert((await shown(timers)).every(v => v === true), 'BFD is on, its timers are not all shown');
		await page.click('#cbid\\.meshd\\.main\\.bfd');
		await settle(page);
		assert((await shown(timers)).every(v => v === false), 'BFD is off, its timers are shown: ' + await shown(timers));
		await page.click('#cbid\\.meshd\\.main\\.bfd');
		await page.click('#cbid\\.meshd\\.main\\.redundancy');
		await settle(page);
		assert((await shown([ 'redundancy_max_size' ]))[0] === false, 'redundant sending is off, its size is shown');
		await page.click('#cbid\\.meshd\\.main\\.redundancy');
		await tab('exit');
		assert((await shown([ 'exit_ports', 'exit_mappings', 'exit_timeout' ])).every(v => v === false), 'no game exit offered, its options are shown');
		// The member dialog: BFD off for bob hides his timers.
		await page.click('#cbi-meshd-member tr[data-sid="bob"] .cbi-button-edit');
		await settle(page);
		const modal = n => page.evaluate(n => { const r = document.querySelector('.modal [data-name="' + n + '"]'); return r && r.checkVisibility(); }, n);
		assert(await modal('bfd_interval') && await modal('bfd_multiplier'), 'BFD as this router: the member\'s timers are hidden');
		await page.selectOption('.modal select[id$=".bfd"]', '0');
		await settle(page);
		assert(!(await modal('bfd_interval')) && !(await modal('bfd_multiplier')), 'BFD off for bob: his timers are shown');
		await page.selectOption('.modal select[id$=".bfd"]', '');
	});

	await checks.run('config: every field has a description', async () => {
		const r = await page.evaluate(() => [ ...document.querySelectorAll('#cbi-meshd-main .cbi-value, .modal .cbi-value') ]
			.filter(v => !(v.querySelector('.cbi-value-description') || {}).textContent)
			.map(v => v.getAttribute('data-name')));
		assert(!r.length, 'no description: ' + r.join(', '));
	});

	await checks.run('config: the member dialog shows a whole 44-character key', async () => {
		const r = await page.evaluate(() => {
			const input = document.querySelector('.modal input[id$=".public_key"]');
			return { value: input.value.length, scroll: input.scrollWidth, client: input.clientWidth };
		});
		assert(r.value == 44 && r.scroll <= r.client, 'the key field shows ' + r.client + ' of ' + r.scroll + ' px');
	});
	await page.evaluate(() => { const b = document.querySelector('.modal .right .cbi-button'); if (b) b.click(); });
	await settle(page);

	await checks.run('config: every value is shown whole, every option fits its row', async () => {
		// Paths as long as people make them.
		await tab('advanced');
		await page.fill('#cbid\\.meshd\\.main\\.private_key_file', '/etc/meshd/keys/this-router.private.key');
		await page.fill('#cbid\\.meshd\\.main\\.control_socket', '/var/run/meshd/control-socket-of-meshd.sock');
		const cut = [];
		for (const t of [ 'general', 'routing', 'failover', 'exit', 'discovery', 'advanced' ]) {
			await tab(t);
			cut.push(...await page.evaluate(() => [ ...document.querySelectorAll('#cbi-meshd-main .cbi-value') ].filter(v => v.checkVisibility()).flatMap(v => {
				const out = [];
				if (v.scrollWidth > v.clientWidth + 1)
					out.push(v.getAttribute('data-name') + ' overflows');
				v.querySelectorAll('input[type=text]').forEach(i => {
					if (i.value && i.scrollWidth > i.clientWidth + 1)
						out.push(v.getAttribute('data-name') + ' shows ' + i.clientWidth + ' of ' + i.scrollWidth + ' px');
				});
				return out;
			})));
		}
		assert(!cut.length, cut.join('; '));
	});

	await checks.run('config: no script error', async () => {
		assert(!errors.length, errors.join('\n'));
	});

	await tab('general');
	await shot(page, 'config-desktop.png');
	await page.setViewportSize({ width: DESKTOP.width, height: 1180 });
	await page.click('#cbi-meshd-member tr[data-sid="bob"] .cbi-button-edit');
	await settle(page);
	await shot(page, 'config-member-dialog.png', { screen: true });
	await context.close();

	{
		const { context, page } = await open(browser, fault, { view: 'config', viewport: PHONE, files: { meshd: SHIPPED_CONFIG } });
		await checks.run('config at 390 px: no text under 11 px, nothing wider than the screen', async () => {
			assertLegibleSmall(await textReport(page), 'config');
		});
		await shot(page, 'config-phone.png', { screen: true });
		await context.close();
	}
}

async function suite(browser, faultName) {
	const checks = new Checks();
	const fault = faultName ? BREAKS[faultName] : null;
	if (faultName && !fault)
		throw new Error('no fault ' + faultName + ' (' + Object.keys(BREAKS).join(', ') + ')');
	await statusChecks(browser, fault, checks);
	await friendsChecks(browser, fault, checks);
	await configChecks(browser, fault, checks);
	return checks.results;
}

async function main() {
	const started = Date.now();
	const browser = await chromium.launch({
		executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
		// Root in CI: Chromium's sandbox needs a user namespace it may not get.
		args: [ '--no-sandbox', '--font-render-hinting=none' ]
	});
	let failed = 0;
	try {
		if (opt('--prove')) {
			// Every fault must make each of its checks fail.
			for (const [ name, fault ] of Object.entries(BREAKS)) {
				const results = await suite(browser, name);
				for (const check of fault.fails) {
					const r = results.find(x => x.name == check);
					const proven = r && !r.ok;
					if (!proven)
						failed++;
					console.log((proven ? 'ok   ' : 'FAIL ') + '--break ' + name + ' fails "' + check + '"' + (r && !r.ok ? ': ' + r.why.split('\n')[0].slice(0, 160) : ''));
				}
			}
			console.log(`${Object.values(BREAKS).reduce((n, f) => n + f.fails.length, 0) - failed} passed, ${failed} failed`);
		}
		else {
			const results = await suite(browser, opt('--break'));
			for (const r of results)
				console.log((r.ok ? 'ok   ' : 'FAIL ') + r.name + (r.ok ? '' : '\n     ' + r.why));
			failed = results.filter(r => !r.ok).length;
			console.log(`browser test: ${((Date.now() - started) / 1000).toFixed(1)} s`);
			console.log(`${results.length - failed} passed, ${failed} failed`);
		}
	}
	finally {
		await browser.close();
	}
	process.exit(failed ? 1 : 0);
}

main().catch(e => {
	console.error('browser test failed: ' + (e && e.stack || e));
	process.exit(1);
});
