// Runs the LuCI status view (luci-app-meshd's view/meshd/status.js) in node
// against a status document, with just enough of LuCI and the DOM stubbed to
// render it, and reports as JSON on stdout:
// - declared: the rpc.declare calls (object, method);
// - calls_at_start: the ubus calls made by load(), render() and the poll
//   LuCI runs as soon as it is added; calls_per_poll: those of one refresh;
// - read: per ubus method, every JSON path the view read from its reply
//   ("members[].bgp.state"; array elements are "[]"; `status` answers the
//   whole document);
// - text: the rendered text; headings: the sections' titles (h3), in order;
// - tables: per section (the id of its element, without `meshd-`), the text
//   of each table row's cells (a line break is "\n");
// - cards: per section, the text of each card (class meshd-card);
// - mutations_unchanged: how many DOM changes (attribute set or removed, node
//   inserted, moved or removed, text changed) a refresh that brings the same
//   document made: the view updates in place, so none;
// - text_after: the rendered text after one more refresh, which answers from
//   the document in argv[5] when given (else the same one);
// - path_segments, svg_lines: the map's highlighted segments after the member
//   named in argv[4] was clicked, and all its lines.
//
// usage: node run-status-view.js <status.js> <status document.json> <member>
//        [<document after the refresh.json>]
//
// A document without `exit` stands for a meshd older than the consoles, a
// document of `null` for a meshd that is not running.
'use strict';

const fs = require('fs');

const [viewPath, docPath, selectMember, afterPath] = process.argv.slice(2);
const source = fs.readFileSync(viewPath, 'utf8');
let doc = JSON.parse(fs.readFileSync(docPath, 'utf8'));

/* What the view reads */

const read = {};
const IGNORED = new Set(['then', 'constructor', 'toJSON', 'toString', 'valueOf']);

function watch(value, method, path) {
	if (value === null || typeof value !== 'object')
		return value;
	return new Proxy(value, {
		get(target, key, receiver) {
			const v = Reflect.get(target, key, receiver);
			if (typeof key !== 'string' || IGNORED.has(key))
				return v;
			if (Array.isArray(target)) {
				if (!/^\d+$/.test(key))
					return v; // length, map, forEach, ...
				return watch(v, method, path + '[]');
			}
			const p = path ? path + '.' + key : key;
			(read[method] = read[method] || new Set()).add(p);
			return watch(v, method, p);
		}
	});
}

/* A minimal DOM: what E(), dom.content() and the view's in-place update use */

// Changes to the page the view returned (not to the trees it builds aside).
let mutations = 0, liveRoot = null;

function live(node) {
	while (node.parentNode)
		node = node.parentNode;
	return node === liveRoot;
}

class Node {
	constructor(type, name, ns) {
		this.nodeType = type;
		this.nodeName = name;
		this.namespaceURI = ns || null;
		this.parentNode = null;
		this.childNodes = [];
	}
	get firstChild() { return this.childNodes[0] || null; }
	get nextSibling() {
		if (!this.parentNode)
			return null;
		const s = this.parentNode.childNodes;
		return s[s.indexOf(this) + 1] || null;
	}
	insertBefore(c, ref) {
		if (live(this))
			mutations++;
		if (c.parentNode)
			c.parentNode.childNodes.splice(c.parentNode.childNodes.indexOf(c), 1);
		const at = ref ? this.childNodes.indexOf(ref) : -1;
		if (at < 0)
			this.childNodes.push(c);
		else
			this.childNodes.splice(at, 0, c);
		c.parentNode = this;
		return c;
	}
	appendChild(c) { return this.insertBefore(c, null); }
	removeChild(c) {
		if (live(this))
			mutations++;
		this.childNodes.splice(this.childNodes.indexOf(c), 1);
		c.parentNode = null;
		return c;
	}
	walk(fn) {
		fn(this);
		for (const c of this.childNodes)
			if (c instanceof Element)
				c.walk(fn);
	}
}

class Element extends Node {
	constructor(tag, ns) {
		super(1, ns ? tag : tag.toUpperCase(), ns || 'http://www.w3.org/1999/xhtml');
		this.tag = tag;
		this.attributes = [];
		this.listeners = {};
	}
	get attrs() { return Object.fromEntries(this.attributes.map(a => [a.name, a.value])); }
	setAttribute(k, v) {
		if (live(this))
			mutations++;
		const a = this.attributes.find(x => x.name === k);
		if (a)
			a.value = String(v);
		else
			this.attributes.push({ name: k, value: String(v) });
	}
	getAttribute(k) {
		const a = this.attributes.find(x => x.name === k);
		return a ? a.value : null;
	}
	hasAttribute(k) { return this.attributes.some(x => x.name === k); }
	removeAttribute(k) {
		if (live(this))
			mutations++;
		this.attributes = this.attributes.filter(x => x.name !== k);
	}
	addEventListener(type, fn) { (this.listeners[type] = this.listeners[type] || []).push(fn); }
	querySelector(sel) {
		const id = sel.replace(/^#/, '');
		let found = null;
		this.walk(n => { if (!found && n !== this && n.getAttribute('id') === id) found = n; });
		return found;
	}
	hasClass(c) { return (this.getAttribute('class') || '').split(/\s+/).includes(c); }
	get text() {
		if (this.tag === 'br')
			return '\n';
		if (this.tag === 'style')
			return '';
		return this.childNodes.map(c => (c instanceof Element) ? c.text : c.nodeValue).join('');
	}
}

class Text extends Node {
	constructor(data) {
		super(3, '#text');
		this.value = String(data);
	}
	get nodeValue() { return this.value; }
	set nodeValue(v) {
		if (live(this))
			mutations++;
		this.value = String(v);
	}
}

const document = {
	createElementNS: (ns, tag) => new Element(tag, ns),
	createElement: tag => new Element(tag),
	createTextNode: data => new Text(data)
};

function append(node, children) {
	if (children == null)
		return;
	if (Array.isArray(children)) {
		for (const c of children)
			if (c instanceof Node)
				node.appendChild(c);
			else if (c != null)
				node.appendChild(new Text(c));
		return;
	}
	if (children instanceof Node)
		node.appendChild(children);
	else if (/[<&]/.test(String(children)))
		// LuCI sets a lone string as innerHTML: markup would be parsed.
		throw new Error('a lone string with markup characters given to E(): ' + children);
	else
		node.appendChild(new Text(children));
}

// LuCI's E(tag, [attrs], [children]): functions in attrs are listeners.
function E(tag, attrs, children) {
	const node = new Element(tag);
	if (attrs != null && (typeof attrs !== 'object' || Array.isArray(attrs) || attrs instanceof Node)) {
		children = attrs;
		attrs = null;
	}
	for (const [k, v] of Object.entries(attrs || {})) {
		if (v == null)
			continue;
		if (typeof v === 'function')
			node.addEventListener(k, v);
		else
			node.setAttribute(k, typeof v === 'object' ? JSON.stringify(v) : v);
	}
	append(node, children);
	return node;
}

const dom = {
	content(node, children) {
		while (node.firstChild)
			node.removeChild(node.firstChild);
		append(node, children);
		return node;
	}
};

/* LuCI's globals and modules */

// String.prototype.format as in luci.js, for the conversions the views use.
Object.defineProperty(String.prototype, 'format', {
	value: function(...args) {
		let i = 0;
		return this.replace(/%(\.\d+)?([sdfh%])/g, (m, prec, conv) => {
			if (conv === '%')
				return '%';
			const a = args[i++];
			if (a === undefined)
				throw new Error('format "' + this + '": missing argument ' + i);
			switch (conv) {
			case 'd': return String(Math.floor(+a));
			case 'f': return (+a).toFixed(prec ? +prec.slice(1) : 6);
			default: return String(a);
			}
		});
	}
});

// A clock the runner moves: a poll comes REFRESH seconds after the last.
let now = 1700000000000;
Date.now = () => now;

const L = {
	bind: (fn, self, ...args) => fn.bind(self, ...args),
	resolveDefault: (promise, def) => Promise.resolve(promise).catch(() => def)
};

const declared = [];
const calls = [];
const replies = {
	// A document of `null` stands for meshd down: ubus has no object meshd.
	'meshd.status': () => (doc === null) ? undefined : watch(doc, 'status', ''),
	'luci-rpc.getHostHints': () => ({
		'00:04:1F:3A:7C:01': { name: 'PS5-Living', ipaddrs: ['192.168.1.20'] },
		'00:0D:3A:5E:11:02': { ipaddrs: ['192.168.1.21'] }
	})
};

// rpc.declare as in LuCI: `expect: { key: default }` picks reply[key].
const rpc = {
	declare(opts) {
		declared.push({ object: opts.object, method: opts.method });
		return () => {
			const name = opts.object + '.' + opts.method;
			calls.push(name);
			let reply = replies[name] ? replies[name]() : undefined;
			if (reply === undefined)
				return Promise.reject(new Error('no ubus method ' + name));
			for (const key in (opts.expect || {})) {
				if (key !== '')
					reply = reply[key];
				break;
			}
			return Promise.resolve(reply);
		};
	}
};

// LuCI's poll runs a function as soon as it is added (poll.start() ran when
// LuCI set up the page), then every `interval` seconds.
const polls = [];
const poll = {
	add(fn, interval) {
		polls.push({ fn, interval });
		fn();
	}
};
const view = { extend: proto => proto };
const window = {};
const _ = s => s;

const settle = () => new Promise(r => setTimeout(r, 0));

async function refresh() {
	now += polls[0].interval * 1000;
	await polls[0].fn.call(null);
	await settle();
}

function sections(root, fn) {
	const out = {};
	root.walk(n => {
		const id = n.getAttribute('id');
		if (id && id.startsWith('meshd-'))
			out[id.slice('meshd-'.length)] = fn(n);
	});
	return out;
}

async function main() {
	const factory = new Function('window', 'document', 'L', 'view', 'rpc', 'poll', 'dom', 'E', '_', source);
	const v = factory(window, document, L, view, rpc, poll, dom, E, _);
	const data = await v.load();
	const root = v.render(data);
	liveRoot = root;
	await settle();
	const callsAtStart = calls.splice(0);
	if (polls.length !== 1)
		throw new Error('expected one poll.add, got ' + polls.length);

	const before = root.text;
	const headings = [];
	root.walk(n => { if (n.tag === 'h3') headings.push(n.text); });
	const tables = sections(root, n => {
		const rows = [];
		n.walk(r => {
			if (r.tag !== 'tr')
				return;
			const cells = r.childNodes.filter(c => c instanceof Element && c.tag === 'td').map(c => c.text);
			if (cells.length)
				rows.push(cells);
		});
		return rows;
	});
	const cards = sections(root, n => {
		const found = [];
		n.walk(c => {
			if (c.hasClass('meshd-card'))
				found.push(c.childNodes.filter(x => x instanceof Element).map(x => x.text));
		});
		return found;
	});

	// A refresh that brings the same document changes nothing.
	mutations = 0;
	await refresh();
	const mutationsUnchanged = mutations;
	const callsPerPoll = calls.splice(0);

	if (afterPath)
		doc = JSON.parse(fs.readFileSync(afterPath, 'utf8'));
	await refresh();
	const after = root.text;

	let pathSegments = 0;
	if (selectMember) {
		let row = null;
		root.querySelector('#meshd-members').walk(n => {
			if (!row && n.tag === 'tr' && n.getAttribute('data-member') === selectMember)
				row = n;
		});
		if (!row)
			throw new Error('no member row for ' + selectMember);
		// The view listens on its root (clicks bubble up to it).
		(root.listeners.click || []).forEach(fn => fn({ target: row.childNodes[0].childNodes[0] }));
		root.querySelector('#meshd-map').walk(n => {
			if (n.tag === 'line' && n.hasClass('meshd-pathseg') && n.parentNode.getAttribute('data-key') === 'paths')
				pathSegments++;
		});
	}

	const out = {
		declared,
		poll_interval: polls[0].interval,
		calls_at_start: callsAtStart,
		calls_per_poll: callsPerPoll,
		read: Object.fromEntries(Object.entries(read).map(([k, s]) => [k, [...s].sort()])),
		text: before,
		headings,
		tables,
		cards,
		mutations_unchanged: mutationsUnchanged,
		text_after: after,
		path_segments: pathSegments,
		svg_lines: 0
	};
	const map = root.querySelector('#meshd-map');
	if (map) map.walk(n => {
		// The map's own lines (the legend draws its glyphs with lines too).
		if (n.tag === 'line' && (n.hasClass('meshd-edge') || n.hasClass('meshd-pathseg')) && n.parentNode.tag === 'g' && n.parentNode.getAttribute('data-key'))
			out.svg_lines++;
	});
	process.stdout.write(JSON.stringify(out, null, 1) + '\n');
}

main().catch(e => {
	process.stderr.write('status view failed: ' + (e && e.stack || e) + '\n');
	process.exit(1);
});
