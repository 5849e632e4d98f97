/*
 * A stand-in for what answers LuCI's calls on a router: ubus (meshd's
 * `status`, `invite`, `join` and `invites`, luci-rpc's `getHostHints`) and
 * rpcd's `uci` object over a UCI file. The test sets window.__rpcd.doc,
 * .hints and .files before the page loads (and changes them between polls),
 * and reads back .calls, .params and .files.
 *
 * Invites as meshd answers them (src/ubus_api.rs, src/daemon.rs): `invite`
 * refuses a name that is not [A-Za-z0-9_]{1,32}, a member's or a pending
 * invite's name, with meshd's words; `join` refuses what is not MESHD1 and
 * base32 and this router's own tokens (with .addressKnown false, `invite`
 * without `endpoint` answers that no endpoint is known); a join then answers `joining`,
 * `writing`, `joined` on three calls of `invites` (or `status`), and the
 * inviter turns up in `members` (a token with FAIL in it: `failed` with a
 * reason). The status document's `invites` is the sample's until the first
 * of these calls, then this live model's.
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

var BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

// A token's text as meshd writes one (MESHD1 and base32, about 150
// characters), made of `seed`.
function fakeToken(seed) {
	var out = 'MESHD1', h = 2166136261;
	for (var i = 0; out.length < 156; i++) {
		h = Math.imul(h ^ String(seed).charCodeAt(i % String(seed).length) ^ i, 16777619) >>> 0;
		out += BASE32.charAt(h % 32);
	}
	return out;
}

var rpcd = window.__rpcd = Object.assign({
	doc: null,
	hints: {},
	files: {},
	calls: [],
	params: [],
	models: {},
	// This router's invites and join, once a call touched them.
	live: null,
	// Who a join reaches: the inviter named in every token this stand-in
	// takes, and the member it becomes.
	inviter: { name: 'dave', overlay: '10.0.0.5', asn: 65005 },
	// Whether meshd knows an address of this router for a token (false: an
	// invite without `endpoint` is refused, as before any member's STUN answer
	// on a router behind NAT).
	addressKnown: true,

	invites: function() {
		if (!this.live) {
			var i = (this.doc && this.doc.invites) || {};
			this.live = {
				pending: (i.pending || []).map(function(p) { return { name: p.name, at: Date.now() + p.expires_in_s * 1000 }; }),
				issued: i.issued || 0,
				joined: i.joined || 0,
				join: clone(i.join || { state: 'none', inviter: null }),
				script: [],
				tokens: []
			};
		}
		return this.live;
	},

	// The `invites` object as meshd writes it; a join moves on one step.
	invitesDoc: function() {
		var l = this.invites(), now = Date.now();
		if (l.script.length) {
			var step = l.script.shift();
			l.join = { state: step[0], inviter: this.inviter.name };
			if (step[1])
				l.join.reason = step[1];
			if (step[0] == 'joined' && this.doc) {
				this.doc.members = (this.doc.members || []).concat([ {
					name: this.inviter.name, overlay: this.inviter.overlay, asn: this.inviter.asn,
					endpoint: '198.51.100.5:51820', endpoint_confirmed: false, path: null
				} ]);
			}
		}
		l.pending = l.pending.filter(function(p) { return p.at > now; });
		return {
			pending: l.pending.map(function(p) { return { name: p.name, expires_in_s: Math.floor((p.at - now) / 1000) }; }),
			issued: l.issued, joined: l.joined, answered_again: 0,
			refused_expired: 0, refused_used: 0, refused_bad_mac: 0, refused_unknown: 0,
			malformed: 0, rate_limited: 0, bad_tokens: 0,
			join: clone(l.join)
		};
	},

	meshd: {
		invite: function(p) {
			var l = rpcd.invites(), name = p.name;
			if (typeof name != 'string')
				return { error: 'argument \'name\' is missing' };
			if (!/^[A-Za-z0-9_]{1,32}$/.test(name))
				return { error: '\'' + name + '\' is not a member name (1..32 of [A-Za-z0-9_])' };
			if (((rpcd.doc && rpcd.doc.members) || []).some(function(m) { return m.name == name; }))
				return { error: 'there is a member \'' + name + '\' already' };
			if (l.pending.some(function(x) { return x.name == name && x.at > Date.now(); }))
				return { error: 'an invite for \'' + name + '\' is pending' };
			var seconds = (p.expires == null) ? 86400 : p.expires;
			if (!(seconds > 0) || seconds > 30 * 86400)
				return { error: 'an invite lasts 1 s to 30 days' };
			if (!rpcd.addressKnown && !(p.endpoint && p.endpoint.length))
				return { error: 'no endpoint to put in the token: give one with --endpoint' };
			var token = fakeToken(name + seconds + l.issued);
			l.pending.push({ name: name, at: Date.now() + seconds * 1000 });
			l.tokens.push(token);
			l.issued++;
			return { token: token };
		},
		join: function(p) {
			var l = rpcd.invites(), token = String(p.token || '').trim();
			if (!/^MESHD1[A-Z2-7]+$/i.test(token))
				return { error: 'not an invite token (MESHD1 and base32)' };
			if (l.tokens.indexOf(token.toUpperCase()) >= 0)
				return { error: 'that is this router\'s own invite' };
			if (l.join.state == 'joining')
				return { error: 'a join is in progress' };
			l.join = { state: 'joining', inviter: rpcd.inviter.name };
			l.script = /FAIL/i.test(token)
				? [ [ 'joining' ], [ 'joining' ], [ 'failed', 'no answer from 198.51.100.5:51820 in 20 s' ] ]
				: [ [ 'joining' ], [ 'writing' ], [ 'joined' ] ];
			return { state: 'joining' };
		}
	},
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
		this.params.push({ call: object + '.' + method, params: clone(params || {}) });
		return new Promise(function(resolve, reject) {
			window.setTimeout(function() {
				try {
					if (object == 'meshd' && method == 'status') {
						if (rpcd.doc == null)
							throw new Error('Object not found');
						var doc = clone(rpcd.doc);
						if (rpcd.live)
							doc.invites = rpcd.invitesDoc();
						return resolve(doc);
					}
					if (object == 'meshd' && method == 'invites') {
						if (rpcd.doc == null)
							throw new Error('Object not found');
						return resolve({ invites: rpcd.invitesDoc() });
					}
					if (object == 'meshd' && rpcd.meshd[method]) {
						if (rpcd.doc == null)
							throw new Error('Object not found');
						return resolve(rpcd.meshd[method](params || {}));
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
