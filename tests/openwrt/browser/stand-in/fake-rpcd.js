/*
 * A stand-in for what answers LuCI's calls on a router: ubus (meshd's
 * `status`, luci-rpc's `getHostHints`) and rpcd's `uci` object over a UCI
 * file. The test sets window.__rpcd.doc, .hints and .files before the page
 * loads (and changes them between polls), and reads back .calls and .files.
 *
 * `uci set/add/delete` change a model of the file the way libuci does:
 * setting an option to the value it has is no change (list.c, uci_set),
 * deleting an absent option is none, setting a list always is one (rpcd
 * deletes and re-adds its items). `uci apply` commits: with no change the
 * file is left alone, byte for byte; with any, it is written again as
 * libuci exports it (every comment and blank line gone).
 */
(function(window) {
'use strict';

function tokens(line) {
	var out = [], re = /\s*(?:'([^']*)'|"((?:[^"\\]|\\.)*)"|(#.*)|([^\s'"#]+))/g, m;
	while ((m = re.exec(line)) != null && m[0] !== '') {
		if (m[3] != null)
			break;
		out.push(m[1] != null ? m[1] : m[2] != null ? m[2].replace(/\\(.)/g, '$1') : m[4]);
	}
	return out;
}

// A UCI file as rpcd's `uci get` answers: sections by name, in order.
function parse(text) {
	var sections = {}, order = [], cur = null, anon = 0;
	String(text).split('\n').forEach(function(line) {
		var t = tokens(line);
		if (!t.length)
			return;
		if (t[0] == 'config') {
			var name = t[2] || ('cfg' + ('0' + (anon++).toString(16)).slice(-2) + 'a1b2');
			cur = sections[name] = { '.anonymous': !t[2], '.type': t[1], '.name': name, '.index': order.length };
			order.push(name);
		}
		else if (t[0] == 'option' && cur)
			cur[t[1]] = t[2];
		else if (t[0] == 'list' && cur)
			(cur[t[1]] = Array.isArray(cur[t[1]]) ? cur[t[1]] : []).push(t[2]);
	});
	return { sections: sections, order: order };
}

function quote(v) {
	return "'" + String(v).replace(/'/g, "'\\''") + "'";
}

// As libuci writes a committed file.
function exportUci(model) {
	return model.order.map(function(name) {
		var s = model.sections[name], out = '\nconfig ' + s['.type'] + (s['.anonymous'] ? '' : ' ' + quote(name)) + '\n';
		Object.keys(s).forEach(function(k) {
			if (k.charAt(0) == '.')
				return;
			if (Array.isArray(s[k]))
				s[k].forEach(function(v) { out += '\tlist ' + k + ' ' + quote(v) + '\n'; });
			else
				out += '\toption ' + k + ' ' + quote(s[k]) + '\n';
		});
		return out;
	}).join('');
}

function clone(v) {
	return JSON.parse(JSON.stringify(v));
}

var rpcd = window.__rpcd = Object.assign({
	doc: null,
	hints: {},
	files: {},
	calls: [],
	models: {},
	deltas: {},

	model: function(config) {
		if (!this.models[config]) {
			this.models[config] = parse(this.files[config] || '');
			this.deltas[config] = [];
		}
		return this.models[config];
	},

	uci: {
		get: function(p) {
			var m = rpcd.model(p.config);
			return { values: clone(m.sections) };
		},
		set: function(p) {
			var m = rpcd.model(p.config), s = m.sections[p.section];
			if (!s)
				throw new Error('Not found');
			Object.keys(p.values || {}).forEach(function(k) {
				var v = p.values[k];
				if (!Array.isArray(v) && s[k] === String(v))
					return;
				s[k] = Array.isArray(v) ? v.map(String) : String(v);
				rpcd.deltas[p.config].push('set ' + p.section + '.' + k + '=' + JSON.stringify(s[k]));
			});
		},
		delete: function(p) {
			var m = rpcd.model(p.config);
			if (!p.options) {
				if (m.sections[p.section]) {
					delete m.sections[p.section];
					m.order = m.order.filter(function(n) { return n != p.section; });
					rpcd.deltas[p.config].push('delete ' + p.section);
				}
				return;
			}
			p.options.forEach(function(k) {
				if (m.sections[p.section] && k in m.sections[p.section]) {
					delete m.sections[p.section][k];
					rpcd.deltas[p.config].push('delete ' + p.section + '.' + k);
				}
			});
		},
		add: function(p) {
			var m = rpcd.model(p.config), name = p.name || ('cfg' + (900 + m.order.length));
			m.sections[name] = Object.assign({ '.anonymous': !p.name, '.type': p.type, '.name': name, '.index': m.order.length }, p.values || {});
			m.order.push(name);
			rpcd.deltas[p.config].push('add ' + name);
			return { section: name };
		},
		apply: function() {
			Object.keys(rpcd.deltas).forEach(function(config) {
				if (rpcd.deltas[config].length)
					rpcd.files[config] = exportUci(rpcd.models[config]);
				rpcd.committed = (rpcd.committed || []).concat(rpcd.deltas[config]);
				rpcd.deltas[config] = [];
			});
		}
	},

	// Answers after a round trip, as the network would.
	call: function(object, method, params) {
		this.calls.push(object + '.' + method);
		return new Promise(function(resolve, reject) {
			window.setTimeout(function() {
				try {
					if (object == 'meshd' && method == 'status') {
						if (rpcd.doc == null)
							throw new Error('Object not found');
						return resolve(clone(rpcd.doc));
					}
					if (object == 'luci-rpc' && method == 'getHostHints')
						return resolve(clone(rpcd.hints));
					if (object == 'uci' && rpcd.uci[method])
						return resolve(rpcd.uci[method](params) || {});
					throw new Error('Method not found: ' + object + '.' + method);
				}
				catch (e) {
					reject(e);
				}
			}, 0);
		});
	}
}, window.__rpcdInit || {});

})(window);
