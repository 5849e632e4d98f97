// Runs the LuCI configuration form (luci-app-meshd's view/meshd/config.js)
// in node with LuCI's form, uci, rpc and ui stubbed, and asks the `validate`
// function of options of the `config meshd` section about values.
//
// usage: node run-config-view.js <config.js> <values.json>
//   values.json: { "<option>": [ "<value>", ... ], ... }
// prints:       { "<option>": { "<value>": true | "<why not>", ... }, ... }
// or:    node run-config-view.js <config.js> --defaults
// prints:       { "<section type>": { "<option>": "<the form's default>" } }
//               for the options whose default the form states
//
// Only options with a validate function of their own can be asked (a
// datatype is checked by LuCI's validation engine, which is not here).
'use strict';

const fs = require('fs');

const [viewPath, valuesPath] = process.argv.slice(2);
const source = fs.readFileSync(viewPath, 'utf8');

Object.defineProperty(String.prototype, 'format', {
	value: function(...args) {
		let i = 0;
		return this.replace(/%(\.\d+)?([sdfh%])/g, (m, prec, conv) => {
			if (conv === '%')
				return '%';
			const a = args[i++];
			return (conv === 'd') ? String(Math.floor(+a)) : String(a);
		});
	}
});

// Options by section type, as the form declares them.
const declared = {};

class Option {
	constructor(sectionType, name) {
		this.sectionType = sectionType;
		this.option = name;
		this.enabled = '1';
		this.disabled = '0';
	}
	value() {}
	depends() {}
}

class Section {
	constructor(type) { this.type = type; }
	tab() {}
	option(cls, name) {
		const o = new Option(this.type, name);
		(declared[this.type] = declared[this.type] || {})[name] = o;
		return o;
	}
	taboption(tab, cls, name) { return this.option(cls, name); }
}

const form = {
	Map: class {
		section(cls, a, b) { return new Section(cls === form.NamedSection ? b : a); }
		render() { return Promise.resolve({ declared, firstChild: null, insertBefore() {} }); }
	},
	NamedSection: class {},
	GridSection: class {},
	Flag: class {},
	Value: class {},
	DummyValue: class {},
	DynamicList: class {},
	ListValue: class {}
};

const L = { resolveDefault: (p, def) => Promise.resolve(p).catch(() => def) };
const uci = { load: () => Promise.resolve(), get: () => null };
const rpc = { declare: () => () => Promise.resolve(null) };
const ui = { addNotification() {} };
const view = { extend: proto => proto };
const _ = s => s;
const E = () => ({});

async function main() {
	const factory = new Function('view', 'form', 'uci', 'rpc', 'ui', 'L', 'E', '_', source);
	const v = factory(view, form, uci, rpc, ui, L, E, _);
	const rendered = [].concat(await v.render(await v.load()));
	const all = rendered.find(n => n && n.declared).declared;
	if (valuesPath === '--defaults') {
		const out = {};
		for (const [type, options] of Object.entries(all))
			for (const [name, o] of Object.entries(options))
				if (o.default != null)
					(out[type] = out[type] || {})[name] = String(o.default);
		process.stdout.write(JSON.stringify(out, null, 1) + '\n');
		return;
	}
	const values = JSON.parse(fs.readFileSync(valuesPath, 'utf8'));
	const options = all['meshd'];
	const out = {};
	for (const [name, list] of Object.entries(values)) {
		const o = options[name];
		if (!o || typeof o.validate !== 'function')
			throw new Error('config meshd: no option ' + name + ' with a validate function');
		out[name] = {};
		for (const value of list)
			out[name][value] = o.validate('main', value);
	}
	process.stdout.write(JSON.stringify(out, null, 1) + '\n');
}

main().catch(e => {
	process.stderr.write('config view failed: ' + (e && e.stack || e) + '\n');
	process.exit(1);
});
