/*
 * A STAND-IN for LuCI's client runtime (luci.js, rpc.js, uci.js, form.js,
 * ui.js), written for the browser test of luci-app-meshd. It is NOT LuCI:
 * LuCI's own files are not packaged anywhere this project installs from.
 *
 * It keeps LuCI's API and the behaviour the views depend on, as LuCI's
 * sources have it:
 * - L.require() loads a view as luci.js does: the file's 'require x'
 *   statements name the classes passed to a factory
 *   `function(window, document, L, x, ...)`, whose return value is a class;
 *   LuCI instantiates it, and view's __init__ runs load(), then render(),
 *   and puts the result in #view with the footer (Save & Apply, Save,
 *   Reset) below a form;
 * - E() and dom.content(): a lone string child is set as innerHTML, an
 *   array's items are appended as nodes or text;
 * - poll.add(): LuCI's poll was started when the page was set up, so a
 *   function added later runs at once, then every `interval` seconds (a
 *   1 s tick, as LuCI.poll does);
 * - rpc.declare(): `expect: { key: default }` picks reply[key], and the
 *   default when the reply lacks it or has another type; an ubus error
 *   rejects;
 * - uci.set() records a change even when the value is the same (uci.js
 *   does; libuci then drops it, see fake-rpcd.js), uci.unset() of an
 *   absent option records nothing;
 * - form: AbstractValue.parse() and Flag.parse() as in LuCI's form.js
 *   (a Flag whose value equals its default is removed while rmempty is
 *   set; a Value is written when it differs from cfgvalue(); an option
 *   hidden by depends() is removed unless `retain` is set), depends() with
 *   several calls meaning "any of", '!reverse', and GridSection's edit
 *   dialog with the section's options (modalonly ones included).
 * It leaves out what the views do not use: the datatype validation engine
 * (options' own validate() functions do run), translations, sessions,
 * menus, and most of ui.js's widgets (plain inputs stand for them).
 */
(function(window, document) {
'use strict';

/* String.prototype.format: the conversions LuCI's views use. */
Object.defineProperty(String.prototype, 'format', {
	value: function() {
		var args = arguments, i = 0;
		return this.replace(/%(\.\d+)?([sdfxh%])/g, function(m, prec, conv) {
			if (conv == '%')
				return '%';
			var a = args[i++];
			switch (conv) {
			case 'd': return String(Math.floor(+a));
			case 'f': return (+a).toFixed(prec ? +prec.slice(1) : 6);
			case 'x': return (+a).toString(16);
			case 'h': return String(a).replace(/[&<>"']/g, function(c) { return '&#' + c.charCodeAt(0) + ';'; });
			default: return String(a);
			}
		});
	}
});

window._ = function(s) { return s; };
window.N_ = function(n, s, p) { return n == 1 ? s : p; };

/* LuCI.baseclass */

var classIndex = 0;

function Class() {}
Class.extend = function(properties) {
	var parent = this;
	var Constructor = function() {
		if (!(this instanceof Constructor))
			throw new TypeError('Constructor must not be called without "new"');
		if (typeof this.__init__ == 'function')
			this.__init__.apply(this, arguments);
	};
	Constructor.prototype = Object.create(parent.prototype);
	Object.keys(properties || {}).forEach(function(k) { Constructor.prototype[k] = properties[k]; });
	Constructor.prototype.constructor = Constructor;
	Constructor.prototype.__base__ = parent.prototype;
	Constructor.prototype.__name__ = (properties && properties.__name__) || 'AnonymousClass' + classIndex++;
	Constructor.extend = Class.extend;
	Constructor.singleton = Class.singleton;
	Constructor.instantiate = Class.instantiate;
	Constructor.isSubclass = Class.isSubclass;
	return Constructor;
};
Class.singleton = function(properties) {
	return new (this.extend(properties))();
};
Class.instantiate = function(args) {
	return new (Function.prototype.bind.apply(this, [ null ].concat(args || [])))();
};
Class.isSubclass = function(c) {
	return c != null && typeof c == 'function' && c.prototype instanceof this;
};
/* LuCI.dom */

var registry = new WeakMap();

var dom = Class.singleton({
	__name__: 'LuCI.dom',
	elem: function(e) { return e != null && typeof e == 'object' && 'nodeType' in e; },
	parse: function(s) {
		var t = document.createElement('template');
		t.innerHTML = s;
		return t.content.firstChild;
	},
	matches: function(node, sel) { return this.elem(node) && node.matches ? node.matches(sel) : false; },
	parent: function(node, sel) { return (this.elem(node) && node.closest) ? node.closest(sel) : null; },
	append: function(node, children) {
		if (!this.elem(node))
			return null;
		if (Array.isArray(children)) {
			for (var i = 0; i < children.length; i++)
				if (this.elem(children[i]))
					node.appendChild(children[i]);
				else if (children[i] != null)
					node.appendChild(document.createTextNode(String(children[i])));
			return node.lastChild;
		}
		if (typeof children == 'function')
			return this.append(node, children(node));
		if (this.elem(children))
			return node.appendChild(children);
		if (children != null) {
			node.innerHTML = String(children);
			return node.lastChild;
		}
		return null;
	},
	content: function(node, children) {
		if (!this.elem(node))
			return null;
		while (node.firstChild)
			node.removeChild(node.firstChild);
		return this.append(node, children);
	},
	attr: function(node, key, val) {
		if (!this.elem(node))
			return;
		var attr = (typeof key == 'object' && key !== null) ? key : null;
		if (!attr) {
			attr = {};
			attr[key] = val;
		}
		for (var k in attr) {
			if (!Object.prototype.hasOwnProperty.call(attr, k) || attr[k] == null)
				continue;
			if (typeof attr[k] == 'function')
				node.addEventListener(k, attr[k]);
			else if (typeof attr[k] == 'object')
				node.setAttribute(k, JSON.stringify(attr[k]));
			else
				node.setAttribute(k, attr[k]);
		}
	},
	create: function() {
		var html = arguments[0], attr = arguments[1], data = arguments[2], elem;
		if (!(attr instanceof Object) || Array.isArray(attr) || this.elem(attr)) {
			data = attr;
			attr = null;
		}
		if (Array.isArray(html)) {
			elem = document.createDocumentFragment();
			for (var i = 0; i < html.length; i++)
				elem.appendChild(this.create(html[i]));
		}
		else if (this.elem(html))
			elem = html;
		else if (html.charCodeAt(0) === 60)
			elem = this.parse(html);
		else
			elem = document.createElement(html);
		if (!elem)
			return null;
		this.attr(elem, attr);
		this.append(elem, data);
		return elem;
	},
	data: function(node, key, val) {
		var d = registry.get(node) || {};
		if (arguments.length > 2) {
			d[key] = val;
			registry.set(node, d);
			return val;
		}
		return arguments.length > 1 ? (d[key] != null ? d[key] : null) : d;
	},
	bindClassInstance: function(node, inst) { return this.data(node, 'luci-class', inst); },
	findClassInstance: function(node) {
		for (; node; node = node.parentNode) {
			var inst = this.data(node, 'luci-class');
			if (inst)
				return inst;
		}
		return null;
	},
	callClassMethod: function(node, method) {
		var inst = this.findClassInstance(node);
		if (!inst || typeof inst[method] != 'function')
			return null;
		return inst[method].apply(inst, Array.prototype.slice.call(arguments, 2));
	},
	isEmpty: function(node) {
		for (var c = node.firstChild; c; c = c.nextSibling)
			if (c.nodeType == 1 || (c.nodeType == 3 && /\S/.test(c.data)))
				return false;
		return true;
	}
});

window.E = function() { return dom.create.apply(dom, arguments); };

/* LuCI.poll */

var Poll = Class.singleton({
	__name__: 'LuCI.poll',
	queue: [],
	add: function(fn, interval) {
		if (interval == null || interval <= 0)
			interval = L.env.pollinterval;
		if (isNaN(interval) || typeof fn != 'function')
			throw new TypeError('Invalid argument to LuCI.poll.add()');
		for (var i = 0; i < this.queue.length; i++)
			if (this.queue[i].fn === fn)
				return false;
		this.queue.push({ r: true, i: interval >>> 0, fn: fn });
		if (this.tick != null && !this.active())
			this.start();
		return true;
	},
	remove: function(fn) {
		var len = this.queue.length;
		this.queue = this.queue.filter(function(e) { return e.fn !== fn; });
		return this.queue.length != len;
	},
	start: function() {
		if (this.active())
			return false;
		this.tick = 0;
		if (this.queue.length) {
			this.timer = window.setInterval(this.step, 1000);
			this.step();
		}
		return true;
	},
	stop: function() {
		if (!this.active())
			return false;
		window.clearInterval(this.timer);
		delete this.timer;
		delete this.tick;
		return true;
	},
	step: function() {
		for (var i = 0, e = null; (e = Poll.queue[i]) != null; i++) {
			if ((Poll.tick % e.i) != 0 || !e.r)
				continue;
			e.r = false;
			Promise.resolve(e.fn()).finally(function() { this.r = true; }.bind(e));
		}
		Poll.tick = (Poll.tick + 1) % Math.pow(2, 32);
	},
	active: function() { return this.timer != null; }
});

/* LuCI.rpc: calls go to the page's fake rpcd (fake-rpcd.js) */

function typeOf(v) {
	return Array.isArray(v) ? 'array' : (v === null ? 'null' : typeof v);
}

var rpc = Class.singleton({
	__name__: 'LuCI.rpc',
	declare: function(opts) {
		return function() {
			var params = {}, args = arguments;
			(opts.params || []).forEach(function(p, i) {
				if (args[i] !== undefined)
					params[p] = args[i];
			});
			return window.__rpcd.call(opts.object, opts.method, params).then(function(ret) {
				if (opts.expect && typeof opts.expect == 'object') {
					for (var key in opts.expect) {
						if (ret != null && key != '')
							ret = ret[key];
						if (ret == null || typeOf(ret) != typeOf(opts.expect[key]))
							ret = opts.expect[key];
						break;
					}
				}
				if (typeof opts.filter == 'function')
					ret = opts.filter(ret, params, opts.object, opts.method);
				return ret;
			});
		};
	}
});

/* LuCI.uci: values loaded with `uci get`, changes staged as uci.js stages
 * them and sent with `uci add/set/delete`. */

var uci = Class.singleton({
	__name__: 'LuCI.uci',
	state: { values: {}, creates: {}, changes: {}, deletes: {}, reorder: {} },
	createSID: function(conf) {
		var sid;
		do
			sid = 'new' + Math.floor(Math.random() * 0xFFFFFF).toString(16);
		while ((this.state.creates[conf] || {})[sid] || (this.state.values[conf] || {})[sid]);
		return sid;
	},
	resolveSID: function(conf, sid) { return sid; },
	load: function(packages) {
		var self = this, names = Array.isArray(packages) ? packages : [ packages ];
		return Promise.all(names.map(function(name) {
			return window.__rpcd.call('uci', 'get', { config: name }).then(function(r) {
				self.state.values[name] = r.values;
				return name;
			});
		}));
	},
	unload: function(packages) {
		(Array.isArray(packages) ? packages : [ packages ]).forEach(function(n) {
			delete this.state.values[n];
			delete this.state.creates[n];
			delete this.state.changes[n];
			delete this.state.deletes[n];
		}, this);
	},
	add: function(conf, type, name) {
		var n = this.state.creates, sid = name || this.createSID(conf);
		n[conf] = n[conf] || {};
		n[conf][sid] = { '.type': type, '.name': sid, '.create': name, '.anonymous': !name, '.index': 1000 + Object.keys(n[conf]).length };
		return sid;
	},
	remove: function(conf, sid) {
		var n = this.state.creates, d = this.state.deletes;
		if (n[conf] && n[conf][sid])
			delete n[conf][sid];
		else if (this.state.values[conf] && this.state.values[conf][sid]) {
			d[conf] = d[conf] || {};
			d[conf][sid] = true;
		}
	},
	sections: function(conf, type, cb) {
		var v = this.state.values[conf] || {}, n = this.state.creates[conf] || {}, d = this.state.deletes[conf] || {};
		var out = [];
		Object.keys(v).forEach(function(s) {
			if (d[s] !== true && (!type || v[s]['.type'] == type))
				out.push(Object.assign({}, v[s], (this.state.changes[conf] || {})[s] || {}));
		}, this);
		Object.keys(n).forEach(function(s) {
			if (!type || n[s]['.type'] == type)
				out.push(n[s]);
		});
		out.sort(function(a, b) { return a['.index'] - b['.index']; });
		if (cb)
			out.forEach(function(s) { cb.call(this, s, s['.name']); }, this);
		return out;
	},
	get: function(conf, sid, opt) {
		var v = this.state.values, n = this.state.creates, c = this.state.changes, d = this.state.deletes;
		if (sid == null)
			return null;
		if (n[conf] && n[conf][sid])
			return (opt == null) ? n[conf][sid] : n[conf][sid][opt];
		if (opt == null)
			return (v[conf] && v[conf][sid]) || null;
		if (d[conf] && d[conf][sid]) {
			if (d[conf][sid] === true || d[conf][sid].indexOf(opt) >= 0)
				return null;
		}
		if (c[conf] && c[conf][sid] && c[conf][sid][opt] != null)
			return c[conf][sid][opt];
		if (v[conf] && v[conf][sid])
			return v[conf][sid][opt];
		return null;
	},
	// As uci.js: a change is staged even when the value is the same.
	set: function(conf, sid, opt, val) {
		var v = this.state.values, n = this.state.creates, c = this.state.changes, d = this.state.deletes;
		if (sid == null || opt == null || opt.charAt(0) == '.')
			return;
		if (n[conf] && n[conf][sid]) {
			if (val != null)
				n[conf][sid][opt] = val;
			else
				delete n[conf][sid][opt];
		}
		else if (val != null && val !== '') {
			if (d[conf] && d[conf][sid] === true)
				return;
			if (!v[conf] || !v[conf][sid])
				return;
			c[conf] = c[conf] || {};
			c[conf][sid] = c[conf][sid] || {};
			if (d[conf] && d[conf][sid])
				d[conf][sid] = d[conf][sid].filter(function(o) { return o !== opt; });
			c[conf][sid][opt] = val;
		}
		else {
			if (!(v[conf] && v[conf][sid] && Object.prototype.hasOwnProperty.call(v[conf][sid], opt)) &&
			    !(c[conf] && c[conf][sid] && Object.prototype.hasOwnProperty.call(c[conf][sid], opt)))
				return;
			d[conf] = d[conf] || {};
			d[conf][sid] = d[conf][sid] || [];
			if (d[conf][sid] !== true)
				d[conf][sid].push(opt);
		}
	},
	unset: function(conf, sid, opt) { return this.set(conf, sid, opt, null); },
	changes: function() { return this.state; },
	save: function() {
		var s = this.state, calls = [], packages = {};
		Object.keys(s.creates).forEach(function(conf) {
			Object.keys(s.creates[conf]).forEach(function(sid) {
				var sec = s.creates[conf][sid], values = {};
				Object.keys(sec).forEach(function(k) { if (k.charAt(0) != '.') values[k] = sec[k]; });
				calls.push([ 'add', { config: conf, type: sec['.type'], name: sec['.create'], values: values } ]);
				packages[conf] = true;
			});
		});
		Object.keys(s.changes).forEach(function(conf) {
			Object.keys(s.changes[conf]).forEach(function(sid) {
				calls.push([ 'set', { config: conf, section: sid, values: s.changes[conf][sid] } ]);
				packages[conf] = true;
			});
		});
		Object.keys(s.deletes).forEach(function(conf) {
			Object.keys(s.deletes[conf]).forEach(function(sid) {
				var d = s.deletes[conf][sid];
				calls.push([ 'delete', (d === true) ? { config: conf, section: sid } : { config: conf, section: sid, options: d } ]);
				packages[conf] = true;
			});
		});
		return calls.reduce(function(p, c) {
			return p.then(function() { return window.__rpcd.call('uci', c[0], c[1]); });
		}, Promise.resolve()).then(L.bind(function() {
			var names = Object.keys(packages);
			this.state.creates = {};
			this.state.changes = {};
			this.state.deletes = {};
			return names.length ? this.load(names) : [];
		}, this));
	},
	apply: function() {
		return window.__rpcd.call('uci', 'apply', { rollback: false });
	}
});

/* LuCI.ui: the parts the views and this stand-in's form use */

var ui = Class.singleton({
	__name__: 'LuCI.ui',
	addNotification: function(title, children, cls) {
		var msg = E('div', { 'class': 'alert-message ' + (cls || '') }, [ title ? E('h4', {}, [ title ]) : '', E('div', {}, children) ]);
		var area = document.getElementById('tabmenu') || document.getElementById('maincontent');
		area.insertBefore(msg, area.firstChild);
		return msg;
	},
	showModal: function(title, children) {
		var overlay = document.getElementById('modal_overlay');
		if (!overlay) {
			overlay = E('div', { 'id': 'modal_overlay' }, [ E('div', { 'class': 'modal', 'role': 'dialog', 'aria-modal': true }) ]);
			document.body.appendChild(overlay);
		}
		var m = overlay.firstChild;
		dom.content(m, [ title ? E('h4', {}, [ title ]) : '' ].concat(Array.isArray(children) ? children : [ children ]));
		document.body.classList.add('modal-overlay-active');
		return m;
	},
	hideModal: function() {
		document.body.classList.remove('modal-overlay-active');
	},
	createHandlerFn: function(ctx, fn) {
		var args = Array.prototype.slice.call(arguments, 2);
		if (typeof fn == 'string')
			fn = ctx[fn];
		return function(ev) {
			var btn = ev ? ev.currentTarget : null;
			if (btn)
				btn.classList.add('spinning');
			return Promise.resolve(fn.apply(ctx, args.concat([ ev ]))).finally(function() {
				if (btn)
					btn.classList.remove('spinning');
			});
		};
	},
	changes: { apply: function() { return uci.apply(); } }
});

/* LuCI.form */

function isEqual(a, b) {
	if (Array.isArray(a) || Array.isArray(b))
		return JSON.stringify(a || []) == JSON.stringify(b || []);
	return a == b;
}

var CBIAbstractElement = Class.extend({
	__name__: 'CBI.AbstractElement',
	__init__: function(title, description) {
		this.title = title || '';
		this.description = description || '';
		this.children = [];
	},
	append: function(obj) { this.children.push(obj); },
	parse: function() {
		var args = arguments;
		return Promise.all(this.children.map(function(c) { return c.parse.apply(c, args); }));
	},
	stripTags: function(s) { return String(s || '').replace(/<[^>]*>/g, ''); },
	titleFn: function(attr) {
		var s = this[attr];
		if (typeof s == 'function')
			s = s.apply(this, Array.prototype.slice.call(arguments, 1));
		else if (s != null)
			s = String(s).format.apply(String(s), Array.prototype.slice.call(arguments, 1));
		return s;
	}
});

var CBIMap = CBIAbstractElement.extend({
	__name__: 'CBI.Map',
	__init__: function(config, title, description) {
		CBIAbstractElement.prototype.__init__.call(this, title, description);
		this.config = config;
		this.data = uci;
	},
	section: function(cls) {
		var s = cls.instantiate([ this ].concat(Array.prototype.slice.call(arguments, 1)));
		this.append(s);
		return s;
	},
	load: function() { return this.data.load(this.config); },
	lookupOption: function(name, section_id) {
		for (var i = 0; i < this.children.length; i++)
			for (var j = 0; j < this.children[i].children.length; j++)
				if (this.children[i].children[j].option == name)
					return [ this.children[i].children[j], section_id ];
		return null;
	},
	findElement: function(attr, value) {
		return this.root ? this.root.querySelector('[' + attr + '="' + value + '"]') : null;
	},
	// As LuCI: shows the options whose dependencies hold, hides the others
	// (twice: a hidden option can hide those that depend on it).
	checkDepends: function() {
		for (var pass = 0; pass < 2; pass++)
			this.children.forEach(function(s) {
				s.cfgsections().forEach(function(sid) {
					s.children.forEach(function(o) {
						var field = this.findElement('data-field', o.cbid(sid));
						if (field)
							field.classList.toggle('hidden', !o.checkDepends(sid));
					}, this);
				}, this);
			}, this);
	},
	renderContents: function() {
		// As LuCI: the map keeps its element and redraws what is in it.
		if (!this.root) {
			this.root = E('div', { 'class': 'cbi-map', 'id': 'cbi-' + this.config });
			dom.bindClassInstance(this.root, this);
			this.root.addEventListener('widget-change', L.bind(this.checkDepends, this));
		}
		return Promise.all(this.children.map(function(s) { return s.render(); })).then(L.bind(function(nodes) {
			dom.content(this.root, [
				this.title ? E('h2', {}, [ this.title ]) : '',
				this.description ? E('div', { 'class': 'cbi-map-descr' }, [ this.description ]) : ''
			].concat(nodes));
			this.checkDepends();
			return this.root;
		}, this));
	},
	render: function() {
		return this.load().then(L.bind(this.renderContents, this));
	},
	save: function(cb, silent) {
		return this.parse().then(cb).then(L.bind(function() { return this.data.save(); }, this))
			.then(L.bind(this.renderContents, this))
			.catch(function(e) {
				if (!silent)
					ui.addNotification(null, E('p', {}, [ String(e && e.message || e) ]), 'danger');
				throw e;
			});
	},
	reset: function() { return this.render(); }
});

var CBIAbstractSection = CBIAbstractElement.extend({
	__name__: 'CBI.AbstractSection',
	__init__: function(map, sectionType, title, description) {
		CBIAbstractElement.prototype.__init__.call(this, title, description);
		this.map = map;
		this.sectiontype = sectionType;
		this.tabs = null;
	},
	cfgsections: function() { return []; },
	tab: function(name, title, description) {
		this.tabs = this.tabs || {};
		this.tab_names = this.tab_names || [];
		this.tab_names.push(name);
		this.tabs[name] = { title: title, description: description, children: [] };
	},
	option: function(cls, option, title, description) {
		var o = cls.instantiate([ this.map, this, option, title, description ]);
		this.append(o);
		return o;
	},
	taboption: function(tab, cls) {
		var o = this.option.apply(this, Array.prototype.slice.call(arguments, 1));
		o.tab = tab;
		this.tabs[tab].children.push(o);
		return o;
	},
	// The options of each section; one this form did not render (a grid's
	// dialog-only option while the dialog is closed) is not part of it.
	parse: function() {
		var tasks = [];
		this.cfgsections().forEach(function(sid) {
			this.children.forEach(function(o) {
				if (this.map.findElement('data-field', o.cbid(sid)))
					tasks.push(o.parse(sid));
			}, this);
		}, this);
		return Promise.all(tasks);
	},
	renderOptions: function(sid) {
		if (!this.tabs)
			return this.children.map(function(o, i) { return o.render(i, sid); });
		var first = this.tab_names[0];
		var menu = E('ul', { 'class': 'cbi-tabmenu' }, this.tab_names.map(function(name) {
			return E('li', { 'class': name == first ? 'cbi-tab' : 'cbi-tab-disabled', 'data-tab': name }, [
				E('a', { 'href': '#', 'click': function(ev) {
					ev.preventDefault();
					var sec = ev.currentTarget.closest('.cbi-section-node');
					sec.querySelectorAll('.cbi-tabmenu > li').forEach(function(li) {
						li.className = (li.getAttribute('data-tab') == name) ? 'cbi-tab' : 'cbi-tab-disabled';
					});
					sec.querySelectorAll(':scope > [data-tab]').forEach(function(p) {
						p.setAttribute('data-tab-active', p.getAttribute('data-tab') == name);
					});
				} }, [ this.tabs[name].title ])
			]);
		}, this));
		return [ menu ].concat(this.tab_names.map(function(name) {
			return E('div', { 'id': 'container.' + this.map.config + '.' + sid + '.' + name, 'data-tab': name, 'data-tab-title': this.tabs[name].title, 'data-tab-active': name == first },
				this.tabs[name].children.map(function(o, i) { return o.render(i, sid); }));
		}, this));
	}
});

var CBINamedSection = CBIAbstractSection.extend({
	__name__: 'CBI.NamedSection',
	__init__: function(map, section_id, sectionType, title, description) {
		CBIAbstractSection.prototype.__init__.call(this, map, sectionType, title, description);
		this.section = section_id;
	},
	cfgsections: function() { return [ this.section ]; },
	render: function() {
		var sid = this.section;
		return Promise.resolve(E('div', { 'class': 'cbi-section', 'id': 'cbi-' + this.map.config + '-' + sid }, [
			this.title ? E('h3', {}, [ this.title ]) : '',
			this.description ? E('div', { 'class': 'cbi-section-descr' }, [ this.description ]) : '',
			E('div', { 'class': 'cbi-section-node' + (this.tabs ? ' cbi-section-node-tabbed' : ''), 'id': 'cbi-' + this.map.config + '-' + sid + '-node' }, this.renderOptions(sid))
		]));
	}
});

var CBITypedSection = CBIAbstractSection.extend({
	__name__: 'CBI.TypedSection',
	cfgsections: function() {
		return this.map.data.sections(this.map.config, this.sectiontype).map(function(s) { return s['.name']; })
			.filter(L.bind(this.filter, this));
	},
	filter: function() { return true; },
	handleAdd: function(ev, name) {
		var sid = this.map.data.add(this.map.config, this.sectiontype, name);
		return this.map.save(null, true).then(L.bind(function() { return this.renderMoreOptionsModal(sid); }, this));
	},
	handleRemove: function(sid) {
		this.map.data.remove(this.map.config, sid);
		return this.map.save(null, true);
	}
});

// A table of sections; each row's "Edit" opens a dialog with all options.
var CBIGridSection = CBITypedSection.extend({
	__name__: 'CBI.GridSection',
	render: function() {
		var sids = this.cfgsections(), cols = this.children.filter(function(o) { return !o.modalonly; });
		var table = E('table', { 'class': 'table cbi-section-table' }, [
			E('tr', { 'class': 'tr cbi-section-table-titles' }, [ E('th', { 'class': 'th' }, [ _('Name') ]) ].concat(cols.map(function(o) {
				return E('th', { 'class': 'th cbi-section-table-cell' }, [ o.title ]);
			})).concat([ E('th', { 'class': 'th cbi-section-actions' }) ]))
		].concat(sids.map(function(sid) {
			return E('tr', { 'class': 'tr cbi-section-table-row', 'data-sid': sid, 'data-title': this.titleFn('sectiontitle', sid) || sid }, [
				E('td', { 'class': 'td', 'data-title': _('Name') }, [ this.titleFn('sectiontitle', sid) || sid ])
			].concat(cols.map(function(o) {
				return E('td', { 'class': 'td cbi-value-field', 'data-title': o.title, 'data-field': o.editable ? o.cbid(sid) : null }, [ o.editable ? o.renderWidget(sid, 0, o.cfgvalue(sid)) : (o.textvalue(sid) || '–') ]);
			})).concat([ E('td', { 'class': 'td cbi-section-actions' }, [
				E('button', { 'class': 'cbi-button cbi-button-edit', 'click': ui.createHandlerFn(this, 'renderMoreOptionsModal', sid) }, [ _('Edit') ]), ' ',
				E('button', { 'class': 'cbi-button cbi-button-remove', 'click': ui.createHandlerFn(this, 'handleRemove', sid) }, [ _('Delete') ])
			]) ]));
		}, this)).concat(sids.length ? [] : [ E('tr', { 'class': 'tr placeholder' }, [ E('td', { 'class': 'td' }, E('em', {}, [ _('This section contains no values yet') ])) ]) ]));

		var nameEl = E('input', { 'type': 'text', 'class': 'cbi-section-create-name' });
		return Promise.resolve(E('div', { 'class': 'cbi-section cbi-tblsection', 'id': 'cbi-' + this.map.config + '-' + this.sectiontype }, [
			this.title ? E('h3', {}, [ this.title ]) : '',
			this.description ? E('div', { 'class': 'cbi-section-descr' }, [ this.description ]) : '',
			table,
			this.addremove ? E('div', { 'class': 'cbi-section-create cbi-tblsection-create' }, [
				E('div', {}, nameEl),
				E('button', { 'class': 'cbi-button cbi-button-add', 'click': ui.createHandlerFn(this, function(ev) {
					return this.handleAdd(ev, nameEl.value);
				}) }, [ this.addbtntitle || _('Add') ])
			]) : ''
		]));
	},
	// As LuCI: a map of its own in a dialog, with copies of the options.
	renderMoreOptionsModal: function(sid) {
		var parent = this.map, m = new CBIMap(parent.config, null, null);
		var s = m.section(CBINamedSection, sid, this.sectiontype);
		this.children.forEach(function(o1) {
			if (o1.modalonly === false)
				return;
			var o2 = s.option(o1.constructor, o1.option, o1.title, o1.description);
			Object.keys(o1).forEach(function(k) {
				if ([ 'map', 'section', 'option', 'title', 'description', 'children', 'widgets' ].indexOf(k) < 0)
					o2[k] = o1[k];
			});
		});
		m.load = function() { return Promise.resolve(); };
		return m.render().then(L.bind(function(nodes) {
			ui.showModal(this.titleFn('modaltitle', sid) || (this.title + ' » ' + (this.titleFn('sectiontitle', sid) || sid)), [
				nodes,
				E('div', { 'class': 'right' }, [
					E('button', { 'class': 'cbi-button', 'click': function() { ui.hideModal(); } }, [ _('Dismiss') ]), ' ',
					E('button', { 'class': 'cbi-button cbi-button-positive important', 'click': ui.createHandlerFn(this, function() {
						return m.parse().then(function() { ui.hideModal(); return parent.renderContents(); });
					}) }, [ _('Save') ])
				])
			]);
		}, this));
	}
});

var CBIAbstractValue = CBIAbstractElement.extend({
	__name__: 'CBI.AbstractValue',
	__init__: function(map, section, option, title, description) {
		CBIAbstractElement.prototype.__init__.call(this, title, description);
		this.map = map;
		this.section = section;
		this.option = option;
		this.default = null;
		this.rmempty = true;
		this.optional = false;
		this.retain = false;
		this.deps = [];
		this.widgets = {};
	},
	depends: function(field, value) {
		var dep;
		if (typeof field == 'string') {
			dep = {};
			dep[field] = value;
		}
		else
			dep = field;
		this.deps.push(dep);
	},
	cbid: function(sid) { return 'cbid.' + this.map.config + '.' + sid + '.' + this.option; },
	cfgvalue: function(sid) { return this.map.data.get(this.map.config, sid, this.option); },
	textvalue: function(sid) {
		var v = this.cfgvalue(sid);
		if (v == null)
			v = this.default;
		return Array.isArray(v) ? v.join(' ') : (v != null ? String(v) : '');
	},
	formvalue: function(sid) {
		var w = this.widgets[sid];
		return w ? w.getValue() : null;
	},
	// As LuCI: whether any of its depends() holds, judged on the other
	// options' form values ('!reverse' negates one).
	checkDepends: function(sid) {
		if (!this.deps.length)
			return true;
		return this.deps.some(function(dep) {
			var ok = true, reverse = !!dep['!reverse'];
			Object.keys(dep).forEach(function(k) {
				if (k.charAt(0) == '!')
					return;
				var o = this.section.children.filter(function(c) { return c.option == k; })[0];
				var v = o ? o.formvalue(sid) : null;
				if (v == null && o)
					v = o.cfgvalue(sid) != null ? o.cfgvalue(sid) : o.default;
				if (!isEqual(v == null ? '' : v, dep[k]))
					ok = false;
			}, this);
			return reverse ? !ok : ok;
		}, this);
	},
	// As LuCI: its field is on the page and not hidden.
	isActive: function(sid) {
		var field = this.map.findElement('data-field', this.cbid(sid));
		return field != null && !field.classList.contains('hidden');
	},
	isValid: function(sid) {
		var w = this.widgets[sid];
		if (!w || typeof this.validate != 'function')
			return true;
		var v = w.getValue(), vals = Array.isArray(v) ? v : [ v ];
		return vals.every(function(x) { return this.validate(sid, x) === true; }, this);
	},
	validate: function() { return true; },
	write: function(sid, value) { return this.map.data.set(this.map.config, sid, this.option, value); },
	remove: function(sid) { return this.map.data.unset(this.map.config, sid, this.option); },
	// As form.js's AbstractValue.parse().
	parse: function(sid) {
		var active = this.isActive(sid);
		if (active && !this.isValid(sid))
			return Promise.reject(new TypeError('Option "%s" contains an invalid input value.'.format(this.title || this.option)));
		if (active) {
			var cval = this.cfgvalue(sid), fval = this.formvalue(sid);
			if (fval == null || fval == '' || (Array.isArray(fval) && !fval.length)) {
				if (this.rmempty || this.optional)
					return Promise.resolve(this.remove(sid));
				return Promise.reject(new TypeError('Option "%s" must not be empty.'.format(this.title || this.option)));
			}
			else if (this.forcewrite || !isEqual(cval, fval))
				return Promise.resolve(this.write(sid, fval));
		}
		else if (!this.retain)
			return Promise.resolve(this.remove(sid));
		return Promise.resolve();
	},
	changed: function(ev) {
		ev.target.dispatchEvent(new CustomEvent('widget-change', { bubbles: true }));
		var v = this.widgets[this.sidOf(ev.target)];
		if (v && typeof this.validate == 'function') {
			var vals = [].concat(v.getValue()), bad = vals.map(function(x) { return this.validate(this.sidOf(ev.target), x); }, this).filter(function(r) { return r !== true; });
			ev.target.classList.toggle('cbi-input-invalid', bad.length > 0);
		}
	},
	sidOf: function(el) { return el.closest('[data-section-id]').getAttribute('data-section-id'); },
	render: function(index, sid) {
		var cfg = this.cfgvalue(sid);
		return E('div', {
			'class': 'cbi-value', 'id': 'cbi-' + this.map.config + '-' + sid + '-' + this.option,
			'data-index': index, 'data-name': this.option, 'data-widget': this.__name__, 'data-field': this.cbid(sid),
			'data-section-id': sid
		}, [
			E('label', { 'class': 'cbi-value-title', 'for': this.cbid(sid) }, [ this.title ]),
			E('div', { 'class': 'cbi-value-field' }, [
				this.renderWidget(sid, index, cfg),
				this.description ? E('div', { 'class': 'cbi-value-description' }, [ this.description ]) : ''
			])
		]);
	}
});

var CBIValue = CBIAbstractValue.extend({
	__name__: 'CBI.Value',
	value: function(key, val) {
		this.keylist = this.keylist || [];
		this.vallist = this.vallist || [];
		this.keylist.push(String(key));
		this.vallist.push(val != null ? val : key);
	},
	renderWidget: function(sid, index, cfgvalue) {
		var input = E('input', {
			'type': this.password ? 'password' : 'text', 'class': 'cbi-input-text', 'id': this.cbid(sid),
			'placeholder': this.placeholder || null, 'value': (cfgvalue != null) ? cfgvalue : (this.default != null ? this.default : ''),
			'input': L.bind(this.changed, this)
		});
		this.widgets[sid] = { getValue: function() { return input.value; } };
		return E('div', { 'class': 'cbi-widget', 'data-section-id': sid }, [ input ]);
	}
});

var CBIListValue = CBIValue.extend({
	__name__: 'CBI.ListValue',
	renderWidget: function(sid, index, cfgvalue) {
		var value = (cfgvalue != null) ? cfgvalue : this.default;
		var select = E('select', { 'class': 'cbi-input-select', 'id': this.cbid(sid), 'change': L.bind(this.changed, this) },
			(this.keylist || []).map(function(k, i) {
				return E('option', { 'value': k, 'selected': (k == (value == null ? '' : value)) ? '' : null }, [ this.vallist[i] ]);
			}, this));
		this.widgets[sid] = { getValue: function() { return select.value; } };
		return E('div', { 'class': 'cbi-widget', 'data-section-id': sid }, [ select ]);
	}
});

var CBIFlag = CBIValue.extend({
	__name__: 'CBI.Flag',
	__init__: function() {
		CBIValue.prototype.__init__.apply(this, arguments);
		this.enabled = '1';
		this.disabled = '0';
		this.default = this.disabled;
	},
	renderWidget: function(sid, index, cfgvalue) {
		var value = (cfgvalue != null) ? cfgvalue : this.default;
		var box = E('input', { 'type': 'checkbox', 'id': this.cbid(sid), 'checked': (value == this.enabled) ? '' : null, 'change': L.bind(this.changed, this) });
		this.widgets[sid] = { getValue: L.bind(function() { return box.checked ? this.enabled : this.disabled; }, this), isChecked: function() { return box.checked; } };
		return E('div', { 'class': 'cbi-checkbox', 'data-section-id': sid }, [ box, E('label', { 'for': this.cbid(sid) }) ]);
	},
	formvalue: function(sid) {
		var w = this.widgets[sid];
		return (w && w.isChecked()) ? this.enabled : this.disabled;
	},
	textvalue: function(sid) {
		var v = this.cfgvalue(sid);
		if (v == null)
			v = this.default;
		return (v == this.enabled) ? _('Yes') : _('No');
	},
	// As form.js's Flag.parse().
	parse: function(sid) {
		if (this.isActive(sid)) {
			var fval = this.formvalue(sid);
			if (!this.isValid(sid))
				return Promise.reject(new TypeError('Option "%s" contains an invalid input value.'.format(this.title || this.option)));
			if (fval == this.default && (this.optional || this.rmempty))
				return Promise.resolve(this.remove(sid));
			return Promise.resolve(this.write(sid, fval));
		}
		else if (!this.retain)
			return Promise.resolve(this.remove(sid));
		return Promise.resolve();
	}
});

var CBIDynamicList = CBIValue.extend({
	__name__: 'CBI.DynamicList',
	renderWidget: function(sid, index, cfgvalue) {
		var values = [].concat(cfgvalue != null ? cfgvalue : (this.default != null ? this.default : []));
		var changed = L.bind(this.changed, this), placeholder = this.placeholder || null;
		var box = E('div', { 'class': 'cbi-dynlist', 'id': this.cbid(sid) });
		function item(v) {
			return E('div', { 'class': 'item' }, [ E('input', { 'type': 'text', 'class': 'cbi-input-text', 'value': v, 'input': changed }) ]);
		}
		values.forEach(function(v) { box.appendChild(item(v)); });
		var add = E('input', { 'type': 'text', 'class': 'cbi-input-text add-item', 'placeholder': placeholder, 'input': changed });
		box.appendChild(add);
		this.widgets[sid] = { getValue: function() {
			return Array.prototype.map.call(box.querySelectorAll('input'), function(i) { return i.value; }).filter(function(v) { return v !== ''; });
		} };
		return E('div', { 'class': 'cbi-widget', 'data-section-id': sid }, [ box ]);
	}
});

var CBIDummyValue = CBIValue.extend({
	__name__: 'CBI.DummyValue',
	renderWidget: function(sid, index, cfgvalue) {
		return E('div', { 'id': this.cbid(sid), 'data-section-id': sid }, [ cfgvalue != null ? String(cfgvalue) : '-' ]);
	},
	formvalue: function() { return null; },
	remove: function() {},
	write: function() {},
	parse: function() { return Promise.resolve(); }
});

var form = Class.singleton({
	__name__: 'LuCI.form',
	Map: CBIMap,
	AbstractSection: CBIAbstractSection,
	NamedSection: CBINamedSection,
	TypedSection: CBITypedSection,
	GridSection: CBIGridSection,
	TableSection: CBIGridSection,
	AbstractValue: CBIAbstractValue,
	Value: CBIValue,
	ListValue: CBIListValue,
	Flag: CBIFlag,
	DynamicList: CBIDynamicList,
	DummyValue: CBIDummyValue
});

/* LuCI.view */

var view = Class.extend({
	__name__: 'LuCI.view',
	__init__: function() {
		var vp = document.getElementById('view');
		dom.content(vp, E('div', { 'class': 'spinning' }, [ _('Loading view…') ]));
		return Promise.resolve(this.load())
			.then(L.bind(this.render, this))
			.then(L.bind(function(nodes) {
				var vp = document.getElementById('view');
				dom.content(vp, nodes);
				dom.append(vp, this.addFooter());
				window.__viewReady = true;
			}, this)).catch(L.error);
	},
	load: function() {},
	render: function() {},
	handleSave: function() {
		var tasks = [];
		document.getElementById('maincontent').querySelectorAll('.cbi-map').forEach(function(map) {
			tasks.push(dom.callClassMethod(map, 'save'));
		});
		return Promise.all(tasks);
	},
	handleSaveApply: function(ev, mode) {
		return this.handleSave(ev).then(function() { return ui.changes.apply(mode == '0'); });
	},
	handleReset: function() {
		var tasks = [];
		document.getElementById('maincontent').querySelectorAll('.cbi-map').forEach(function(map) {
			tasks.push(dom.callClassMethod(map, 'reset'));
		});
		return Promise.all(tasks);
	},
	addFooter: function() {
		var footer = E([]);
		if (this.handleSaveApply || this.handleSave || this.handleReset)
			footer.appendChild(E('div', { 'class': 'cbi-page-actions' }, [
				this.handleSaveApply ? E('button', { 'class': 'cbi-button cbi-button-apply', 'click': ui.createHandlerFn(this, 'handleSaveApply') }, [ _('Save & Apply') ]) : '', ' ',
				this.handleSave ? E('button', { 'class': 'cbi-button cbi-button-save', 'click': ui.createHandlerFn(this, 'handleSave') }, [ _('Save') ]) : '', ' ',
				this.handleReset ? E('button', { 'class': 'cbi-button cbi-button-reset', 'click': ui.createHandlerFn(this, 'handleReset') }, [ _('Reset') ]) : ''
			]));
		return footer;
	}
});

/* L */

var classes = { baseclass: Class, dom: dom, poll: Poll, rpc: rpc, uci: uci, ui: ui, form: form, view: view };

var L = window.L = {
	env: { pollinterval: 5, base_url: '/luci-static/resources' },
	Class: Class,
	dom: dom,
	Poll: Poll,
	poll: Poll,
	ui: ui,
	bind: function(fn, self) {
		return Function.prototype.bind.apply(fn, [ self ].concat(Array.prototype.slice.call(arguments, 2)));
	},
	isObject: function(v) { return v != null && typeof v == 'object'; },
	toArray: function(v) { return v == null ? [] : Array.isArray(v) ? v : [ v ]; },
	resolveDefault: function(p, def) { return Promise.resolve(p).catch(function() { return def; }); },
	error: function(e) {
		window.__viewError = String(e && e.stack || e);
		throw e;
	},
	// As luci.js: the source's leading 'require x' statements name the
	// classes its factory gets after window, document and L.
	require: function(name) {
		if (classes[name])
			return Promise.resolve(classes[name]);
		var url = L.env.base_url + '/' + name.replace(/\./g, '/') + '.js';
		return window.fetch(url).then(function(res) {
			if (!res.ok)
				throw new Error('HTTP error ' + res.status + ' while loading class file "' + url + '"');
			return res.text();
		}).then(function(source) {
			var names = [], deps = [], m, re = /^\s*(?:'(use strict|require [^']+)'|"(use strict|require [^"]+)");?/;
			var rest = source;
			while ((m = re.exec(rest)) != null) {
				var stmt = m[1] || m[2], r = /^require[ \t]+(\S+)(?:[ \t]+as[ \t]+([a-zA-Z_]\S*))?$/.exec(stmt);
				if (r) {
					deps.push(L.require(r[1]));
					names.push(r[2] || r[1].replace(/[^a-zA-Z0-9_]/g, '_'));
				}
				rest = rest.slice(m[0].length);
			}
			return Promise.all(deps).then(function(instances) {
				var factory = eval('(function(window, document, L' + names.map(function(n) { return ', ' + n; }).join('') + ') { ' + source + ' })\n//# sourceURL=' + url);
				var cls = factory.apply(factory, [ window, document, L ].concat(instances));
				if (!Class.isSubclass(cls))
					throw new TypeError('"' + name + '" factory yields invalid constructor');
				return (classes[name] = new cls());
			});
		});
	}
};

// What luci.js does once the page is set up: the poll loop starts (with
// nothing to run yet), then the view loads.
L.boot = function(viewName) {
	Poll.start();
	return L.require(viewName).catch(L.error);
};

})(window, document);
