// Runs the LuCI status view (luci-app-meshd's view/meshd/status.js) in node
// against a status document, with just enough of LuCI and the DOM stubbed to
// render it, and reports as JSON on stdout:
// - declared: the rpc.declare calls (object, method);
// - read: per ubus method, every JSON path the view read from its reply
//   ("members[].bgp.state"; array elements are "[]");
// - text: the rendered text, and the map's highlighted segments after the
//   member named in argv[4] was selected;
// - headings: the sections' titles (h3), in order;
// - tables: per section (the id of its element, without `meshd-`), the text
//   of each table row's cells (a line break is "\n");
// - text_after: the rendered text after one refresh, which answers from the
//   document in argv[5] when given (else the same one).
//
// usage: node run-status-view.js <status.js> <status document.json> <member>
//        [<document after the refresh.json>]
//
// The ubus replies follow the convention of status-contract.json: `status`
// is the whole document, `members`, `routes` and `nat` are objects holding
// that one key of it, and `consoles` is its `exit` object itself (read paths
// start with `exit.`). A document without `exit` stands for a meshd without
// the `consoles` method: the call fails, as ubus's METHOD_NOT_FOUND does.
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

/* A minimal DOM */

class Node {
	constructor(tag, ns) {
		this.tag = tag;
		this.ns = ns || null;
		this.attrs = {};
		this.children = [];
		this.listeners = {};
	}
	setAttribute(k, v) { this.attrs[k] = String(v); }
	getAttribute(k) { return this.attrs[k]; }
	appendChild(c) { this.children.push(c); return c; }
	addEventListener(type, fn) { (this.listeners[type] = this.listeners[type] || []).push(fn); }
	querySelector(sel) {
		const id = sel.replace(/^#/, '');
		for (const c of this.children) {
			if (!(c instanceof Node))
				continue;
			if (c.attrs.id === id)
				return c;
			const found = c.querySelector(sel);
			if (found)
				return found;
		}
		return null;
	}
	get text() {
		if (this.tag === 'br')
			return '\n';
		return this.children.map(c => (c instanceof Node) ? c.text : c.data).join('');
	}
	walk(fn) {
		fn(this);
		for (const c of this.children)
			if (c instanceof Node)
				c.walk(fn);
	}
}

class Text {
	constructor(data) { this.data = String(data); }
}

const document = {
	createElementNS: (ns, tag) => new Node(tag, ns),
	createElement: tag => new Node(tag),
	createTextNode: data => new Text(data)
};

function append(node, children) {
	if (children == null || children === false)
		return;
	if (Array.isArray(children)) {
		children.forEach(c => append(node, c));
		return;
	}
	if (children instanceof Node || children instanceof Text)
		node.appendChild(children);
	else
		node.appendChild(new Text(children));
}

// LuCI's E(tag, [attrs], [children]): functions in attrs are listeners.
function E(tag, attrs, children) {
	const node = new Node(tag);
	if (attrs != null && (typeof attrs !== 'object' || Array.isArray(attrs) || attrs instanceof Node || attrs instanceof Text)) {
		children = attrs;
		attrs = null;
	}
	for (const [k, v] of Object.entries(attrs || {})) {
		if (v == null)
			continue;
		if (typeof v === 'function')
			node.addEventListener(k, v);
		else
			node.setAttribute(k, v);
	}
	append(node, children);
	return node;
}

const dom = {
	content(node, children) {
		node.children = [];
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

const L = {
	bind: (fn, self, ...args) => fn.bind(self, ...args),
	resolveDefault: (promise, def) => Promise.resolve(promise).catch(() => def)
};

const declared = [];
const replies = {
	status: () => doc,
	members: () => ({ members: doc.members }),
	routes: () => ({ routes: doc.routes }),
	nat: () => ({ nat: doc.nat }),
	consoles: () => doc.exit
};
// Where a reply sits in the status document (the paths' first part).
const roots = { consoles: 'exit' };

// rpc.declare as in LuCI: `expect: { key: default }` picks reply[key].
const rpc = {
	declare(opts) {
		declared.push({ object: opts.object, method: opts.method });
		return () => {
			const answer = (opts.object === 'meshd' && replies[opts.method]) ? replies[opts.method]() : undefined;
			if (answer === undefined)
				return Promise.reject(new Error('no ubus method ' + opts.object + '.' + opts.method));
			let reply = watch(answer, opts.method, roots[opts.method] || '');
			for (const key in (opts.expect || {})) {
				if (key !== '')
					reply = reply[key];
				break;
			}
			return Promise.resolve(reply);
		};
	}
};

const polls = [];
const poll = { add: (fn, interval) => polls.push({ fn, interval }) };
const view = { extend: proto => proto };
const _ = s => s;

async function main() {
	const factory = new Function('view', 'rpc', 'poll', 'dom', 'L', 'E', '_', 'document', source);
	const v = factory(view, rpc, poll, dom, L, E, _, document);
	const data = await v.load();
	const root = v.render(data);
	const before = root.text;

	const headings = [];
	root.walk(n => { if (n.tag === 'h3') headings.push(n.text); });
	const tables = {};
	root.walk(n => {
		const id = n.attrs.id;
		if (!id || !id.startsWith('meshd-'))
			return;
		const rows = [];
		n.walk(r => {
			if (r.tag !== 'tr')
				return;
			const cells = r.children.filter(c => c instanceof Node && c.tag === 'td').map(c => c.text);
			if (cells.length)
				rows.push(cells);
		});
		tables[id.slice('meshd-'.length)] = rows;
	});

	if (polls.length !== 1)
		throw new Error('expected one poll.add, got ' + polls.length);
	if (afterPath)
		doc = JSON.parse(fs.readFileSync(afterPath, 'utf8'));
	await polls[0].fn.call(null);
	const after = root.text;

	let pathSegments = 0;
	if (selectMember) {
		let row = null;
		root.querySelector('#meshd-members').walk(n => {
			if (!row && n.tag === 'tr' && n.listeners.click && n.text.indexOf(selectMember) >= 0)
				row = n;
		});
		if (!row)
			throw new Error('no member row for ' + selectMember);
		row.listeners.click.forEach(fn => fn({}));
		root.querySelector('#meshd-map').walk(n => {
			if (n.tag === 'line' && n.attrs['stroke-width'] === '7')
				pathSegments++;
		});
	}

	const out = {
		declared,
		poll_interval: polls[0].interval,
		read: Object.fromEntries(Object.entries(read).map(([k, s]) => [k, [...s].sort()])),
		text: before,
		headings,
		tables,
		text_after: after,
		path_segments: pathSegments,
		svg_lines: 0
	};
	root.querySelector('#meshd-map').walk(n => { if (n.tag === 'line') out.svg_lines++; });
	process.stdout.write(JSON.stringify(out, null, 1) + '\n');
}

main().catch(e => {
	process.stderr.write('status view failed: ' + (e && e.stack || e) + '\n');
	process.exit(1);
});
