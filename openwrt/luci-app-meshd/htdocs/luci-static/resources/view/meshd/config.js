'use strict';
'require view';
'require form';
'require uci';
'require rpc';
'require ui';

/*
 * /etc/config/meshd: one 'config meshd' section named 'main' (this router)
 * and one 'config member' per friend's router. The options and their limits
 * are those of meshd's parser (src/config.rs); meshd checks the file again
 * when the service reloads and refuses a broken one.
 */

var callStatus = rpc.declare({
	object: 'meshd',
	method: 'status',
	expect: { '': {} }
});

var MAX_MEMBER_NAME = 32;
var MAX_CONSOLES = 32;

// Inputs as wide as their field, a key's field as wide as a key.
var CSS = [
	'#cbi-meshd .cbi-value-field .cbi-input-text,#cbi-meshd .cbi-value-field .cbi-input-select{width:100%;max-width:34em;box-sizing:border-box}',
	'.meshd-key{font-family:monospace;width:48ch!important;max-width:100%!important;box-sizing:border-box}'
].join('\n');

// Saving writes only what the user changed. LuCI removes a Flag whose value
// equals its default (while rmempty is set), and writes the default shown
// for an option the file leaves out: either changes a file nobody touched,
// and rpcd's commit then rewrites it whole, comments lost. So: no removal
// (rmempty off), and no write of the default over an absent option (meshd
// uses the same default). What the user does change is written as before.
function keepAsIs(o) {
	o.rmempty = false;
	o.write = function(section_id, value) {
		var cval = this.cfgvalue(section_id);
		if (cval == value || (cval == null && value == this.default))
			return;
		return Object.getPrototypeOf(this).write.call(this, section_id, value);
	};
	return o;
}

// An option shown only while its switch is on keeps its value while hidden
// (LuCI removes a hidden option's value on save unless `retain` is set).
function dependsOn(o, option, value) {
	o.depends(option, value);
	o.retain = true;
	return o;
}

// A WireGuard key as `wg` prints it: 32 bytes of base64, canonical (the last
// character before '=' carries 4 bits of the key and 2 zero bits).
function isWireguardKey(value) {
	return /^[A-Za-z0-9+\/]{42}[AEIMQUYcgkosw048]=$/.test(value);
}

function validateAbsolutePath(section_id, value) {
	if (value == null || value === '')
		return true;
	return value.charAt(0) == '/' ? true : _('An absolute path (starting with /)');
}

function validateAsn(section_id, value) {
	if (value === '23456')
		return _('23456 is AS_TRANS (RFC 6793), not a usable AS number');
	return true;
}

// A Linux interface name as meshd takes it (tun, lan_interface).
function validateInterfaceName(section_id, value) {
	if (value == null || value === '')
		return true;
	return (/^[A-Za-z0-9_.-]{1,15}$/.test(value) && value != '.' && value != '..')
		? true : _('1-15 of A-Z a-z 0-9 _ . -');
}

// The exit's public UDP ports: lo-hi, both in 1024-65535.
function validateExitPorts(section_id, value) {
	if (value == null || value === '')
		return true;
	var m = /^(\d{1,20})-(\d{1,20})$/.exec(value);
	if (!m || +m[1] < 1024 || +m[1] > +m[2] || +m[2] > 65535)
		return _('A port range lo-hi within 1024-65535, e.g. 40000-40999');
	return true;
}

// A console as meshd takes it (src/consoles.rs): a MAC address, six pairs of
// hex digits separated all by ':' or all by '-' (a device's own, not a group
// address), or a unicast IPv4 address.
function validateConsole(section_id, value) {
	if (value == null || value === '')
		return true;
	if (/[:-]/.test(value)) {
		var m = /^[0-9A-Fa-f]{2}([:-])[0-9A-Fa-f]{2}(\1[0-9A-Fa-f]{2}){4}$/.exec(value);
		if (!m)
			return _('A MAC address (aa:bb:cc:dd:ee:ff) or an IPv4 address');
		if (parseInt(value.substr(0, 2), 16) & 1)
			return _('A group (multicast) MAC address, which no console has');
		if (/^0+$/.test(value.replace(/[:-]/g, '')))
			return _('The all-zero MAC address, which no console has');
		return true;
	}
	var parts = value.split('.');
	if (parts.length != 4 || !parts.every(function(p) { return /^(0|[1-9]\d{0,2})$/.test(p) && +p <= 255; }))
		return _('A MAC address (aa:bb:cc:dd:ee:ff) or an IPv4 address');
	var first = +parts[0];
	if (value == '0.0.0.0' || value == '255.255.255.255' || first == 127 || (first >= 224 && first <= 239))
		return _('Not a single device\'s address (a unicast IPv4 address)');
	return true;
}

return view.extend({
	load: function() {
		return Promise.all([
			L.resolveDefault(callStatus(), null),
			uci.load('meshd')
		]);
	},

	render: function(data) {
		var status = data[0];
		var m, s, o, ms;

		m = new form.Map('meshd', _('Game Mesh'),
			_('This router joins friends\' routers in one WireGuard mesh: the consoles behind them play as if they shared a LAN. Every home needs its own overlay address, AS number and LAN prefix.'));

		/* This router */

		s = m.section(form.NamedSection, 'main', 'meshd', _('This router'));
		s.addremove = false;

		s.tab('general', _('General'));
		s.tab('routing', _('BGP and tunnels'));
		s.tab('failover', _('Failover'));
		s.tab('exit', _('Game exit'));
		s.tab('discovery', _('LAN games'));
		s.tab('advanced', _('Advanced'));

		o = s.taboption('general', form.Flag, 'enabled', _('Enabled'),
			_('meshd runs once this router has its overlay address, AS number and prefix.'));
		o.default = o.enabled;
		keepAsIs(o);

		o = s.taboption('general', form.DummyValue, '_public_key', _('Public key'),
			_('Give it to your friends: their member entry for this router needs it.'));
		o.cfgvalue = function() {
			return (status && status.public_key) ? status.public_key : _('(known once meshd runs)');
		};

		o = s.taboption('general', form.Value, 'overlay', _('Overlay address'),
			_('This router\'s IPv4 address inside the mesh; leave it empty and it is derived from this router\'s key (friends derive the same).'));
		o.datatype = 'ip4addr("nomask")';
		o.placeholder = _('from the key');

		o = s.taboption('general', form.Value, 'asn', _('AS number'),
			_('One per home; leave it empty and it is derived from this router\'s key (a private AS, 4200000000-4294967294).'));
		o.datatype = 'and(uinteger,range(1,4294967294))';
		o.validate = validateAsn;
		o.placeholder = _('from the key');

		o = s.taboption('general', form.DynamicList, 'announce', _('Announced prefixes'),
			_('The home LAN the console lives on, e.g. 192.168.1.0/24 (at most 8). No two homes may use the same one.'));
		o.datatype = 'cidr';

		o = s.taboption('general', form.Value, 'listen_port', _('Mesh port'),
			_('UDP port of the WireGuard mesh; meshd opens it in the firewall.'));
		o.datatype = 'and(port,min(1))';
		o.placeholder = '51820';

		o = s.taboption('general', form.ListValue, 'lan_alias', _('LAN alias'),
			_('How friends reach your consoles when their LAN uses the same addresses as yours (OpenWrt\'s default 192.168.1.0/24 everywhere): your LAN gets an alias in the mesh, derived from this router\'s key.'));
		o.value('auto', _('When the overlay address is left to the key'));
		o.value('on', _('Always'));
		o.value('off', _('Never: announce the LAN as it is'));
		o.default = 'auto';
		keepAsIs(o);

		o = s.taboption('general', form.Value, 'overlay6', _('IPv6 overlay address'),
			_('Optional: this router\'s IPv6 address inside the mesh, e.g. fd00::1; unique per home.'));
		o.datatype = 'ip6addr("nomask")';

		o = s.taboption('routing', form.Value, 'hold_time', _('BGP hold time'),
			_('Seconds: 0 (no keepalives) or 3-65535.'));
		o.datatype = 'and(uinteger,or(0,range(3,65535)))';
		o.placeholder = '9';

		o = s.taboption('routing', form.Value, 'connect_retry', _('BGP connect retry'), _('Seconds.'));
		o.datatype = 'range(1,3600)';
		o.placeholder = '2';

		o = s.taboption('routing', form.Value, 'keepalive', _('WireGuard keepalive'),
			_('Seconds between keepalives that hold NAT mappings open; 0 turns them off.'));
		o.datatype = 'range(0,65535)';
		o.placeholder = '25';

		o = s.taboption('routing', form.Value, 'max_paths', _('Equal-cost paths'),
			_('How many equally good paths to use at once (1-32).'));
		o.datatype = 'range(1,32)';
		o.placeholder = '1';

		o = s.taboption('routing', form.Value, 'max_members', _('Room for members'),
			_('How many friends\' routers this router keeps room for (1-64). Memory for them is set aside when meshd starts; changing this restarts meshd.'));
		o.datatype = 'range(1,64)';
		o.placeholder = '16';

		o = s.taboption('routing', form.Value, 'relay_rate', _('Relay limit'),
			_('Transit traffic one member may send through this router, in kbit/s; 0 = no limit. Games need well under 1000 per console.'));
		o.datatype = 'range(0,10000000)';
		o.placeholder = '20000';

		o = s.taboption('failover', form.Flag, 'bfd', _('BFD'),
			_('Fast failure detection on every tunnel: a dead router is noticed in interval x multiplier.'));
		o.default = o.enabled;
		keepAsIs(o);

		o = s.taboption('failover', form.Value, 'bfd_interval', _('BFD interval'), _('Milliseconds.'));
		o.datatype = 'range(1,10000)';
		o.placeholder = '10';
		dependsOn(o, 'bfd', '1');

		o = s.taboption('failover', form.Value, 'bfd_multiplier', _('BFD multiplier'),
			_('Missed packets before a tunnel is declared down.'));
		o.datatype = 'range(2,255)';
		o.placeholder = '4';
		dependsOn(o, 'bfd', '1');

		o = s.taboption('failover', form.Value, 'bfd_max_detection', _('BFD longest detection'),
			_('Milliseconds: on a jittery path BFD stretches its detection time to fit the measured jitter, up to this. At or below interval times multiplier the timers stay fixed.'));
		o.datatype = 'range(0,60000)';
		o.placeholder = '200';
		dependsOn(o, 'bfd', '1');

		o = s.taboption('failover', form.Value, 'bfd_confirm', _('BFD confirmation'),
			_('Milliseconds BFD must stay down, after traffic has already moved to another path, before the tunnel\'s BGP session and routes go. Rides out upload queues and short stalls; 0 takes BGP down at once.'));
		o.datatype = 'range(0,60000)';
		o.placeholder = '2000';
		dependsOn(o, 'bfd', '1');

		o = s.taboption('failover', form.Value, 'bfd_hold_down', _('BFD hold-down'),
			_('Seconds BGP waits, once BFD is up again, before it uses the tunnel.'));
		o.datatype = 'range(0,600)';
		o.placeholder = '2';
		dependsOn(o, 'bfd', '1');

		o = s.taboption('failover', form.Flag, 'redundancy', _('Redundant sending'),
			_('Send small game packets over two paths at once, so that a failing router loses none.'));
		o.default = o.enabled;
		keepAsIs(o);

		o = s.taboption('failover', form.Value, 'redundancy_max_size', _('Redundant packet size'),
			_('Largest UDP packet, in bytes, that is sent twice.'));
		o.datatype = 'range(28,1420)';
		o.placeholder = '300';
		dependsOn(o, 'redundancy', '1');

		o = s.taboption('exit', form.Flag, 'exit', _('Offer this router as a game exit'),
			_('Friends\' consoles can play through your internet connection and get an open NAT (PlayStation Type 2, Xbox Open, Switch A); it needs a public IPv4 address, or a router in front that forwards the exit ports here.'));
		o.default = o.disabled;
		keepAsIs(o);

		o = s.taboption('exit', form.Value, 'exit_ports', _('Exit ports'),
			_('The UDP ports friends\' games use on your connection; set them only when a router in front forwards just this range here (meshd opens them in the firewall).'));
		o.placeholder = '1024-65535';
		o.validate = validateExitPorts;
		dependsOn(o, 'exit', '1');

		o = s.taboption('exit', form.Value, 'exit_mappings', _('Game connections per home'),
			_('How many game connections the consoles of one friend\'s home may keep open through this router at once (1-1024).'));
		o.datatype = 'range(1,1024)';
		o.placeholder = '256';
		dependsOn(o, 'exit', '1');

		o = s.taboption('exit', form.Value, 'exit_timeout', _('Idle connection timeout'),
			_('Seconds a game connection nobody uses stays open, so that a console\'s address does not change between matches (120-3600).'));
		o.datatype = 'range(120,3600)';
		o.placeholder = '300';
		dependsOn(o, 'exit', '1');

		o = s.taboption('exit', form.Flag, 'exit_all', _('All console traffic through the exit'),
			_('Send everything your consoles do through their game exit, downloads included, instead of only the games\' UDP.'));
		o.default = o.disabled;
		keepAsIs(o);

		o = s.taboption('exit', form.ListValue, 'consoles', _('Find consoles'),
			_('How this router knows your consoles: by their maker\'s MAC addresses (Sony, Microsoft, Nintendo), or only the ones listed below.'));
		o.value('auto', _('Automatically, and those listed'));
		o.value('off', _('Only those listed'));
		o.default = 'auto';
		keepAsIs(o);

		o = s.taboption('exit', form.DynamicList, 'console', _('Consoles'),
			_('A console the automatic search misses, by its MAC address (aa:bb:cc:dd:ee:ff) or IPv4 address; at most %d.').format(MAX_CONSOLES));
		o.validate = validateConsole;

		o = s.taboption('exit', form.Value, 'lan_interface', _('Consoles\' network'),
			_('The network device your consoles are connected to; br-lan on most routers.'));
		o.placeholder = 'br-lan';
		o.validate = validateInterfaceName;

		o = s.taboption('discovery', form.Flag, 'discovery', _('Relay LAN discovery'),
			_('Consoles in friends\' homes find each other as if on one LAN: their discovery broadcasts are carried to every friend\'s LAN, and the answers come back through the mesh.'));
		o.default = o.enabled;
		keepAsIs(o);

		o = s.taboption('discovery', form.DynamicList, 'discovery_port', _('Broadcast ports'),
			_('UDP ports whose broadcasts are relayed; at most 8. Left empty: 987 (PS4 Remote Play), 9302 (PS5), 30000 (Switch LAN mode).'));
		o.datatype = 'range(1,65535)';
		o.placeholder = '9302';
		dependsOn(o, 'discovery', '1');

		o = s.taboption('discovery', form.Flag, 'discovery_ssdp', _('Relay SSDP'),
			_('Multicast to 239.255.255.250:1900, which some games and Remote Play use to find each other.'));
		o.default = o.enabled;
		keepAsIs(o);
		dependsOn(o, 'discovery', '1');

		o = s.taboption('discovery', form.Flag, 'discovery_mdns', _('Relay mDNS'),
			_('Multicast to 224.0.0.251:5353. Off by default: every phone, printer and speaker announces itself this way, and no console needs it.'));
		o.default = o.disabled;
		keepAsIs(o);
		dependsOn(o, 'discovery', '1');

		o = s.taboption('advanced', form.Value, 'private_key_file', _('Private key file'),
			_('Created (mode 0600) on first start when missing.'));
		o.placeholder = '/etc/meshd/private.key';
		o.validate = validateAbsolutePath;

		o = s.taboption('advanced', form.Value, 'tun', _('TUN interface'),
			_('The network device meshd creates for the mesh; put it in the LAN firewall zone.'));
		o.placeholder = 'meshd0';
		o.validate = validateInterfaceName;

		o = s.taboption('advanced', form.Value, 'control_socket', _('Control socket'),
			_('Where `meshd status` and `meshd reload` reach the running meshd.'));
		o.placeholder = '/var/run/meshd.sock';
		o.validate = function(section_id, value) {
			if (value != null && value.length > 107)
				return _('At most 107 bytes');
			return validateAbsolutePath(section_id, value);
		};

		o = s.taboption('advanced', form.ListValue, 'log_level', _('Log level'),
			_('How much meshd writes to the system log.'));
		o.value('error', _('Errors'));
		o.value('warn', _('Warnings'));
		o.value('info', _('Information'));
		o.value('debug', _('Debug'));
		o.value('trace', _('Trace'));
		o.default = 'info';
		keepAsIs(o);

		/* Friends' routers */

		ms = m.section(form.GridSection, 'member', _('Members'),
			_('One entry per friend\'s router; the entry\'s name is the member\'s name (letters, digits and _, at most 32).'));
		ms.anonymous = false;
		ms.addremove = true;
		ms.nodescriptions = true;
		ms.addbtntitle = _('Add member');

		// Members written by `uci add` are anonymous and carry option name.
		ms.sectiontitle = function(section_id) {
			return uci.get('meshd', section_id, 'name') || section_id;
		};

		ms.handleAdd = function(ev, name) {
			if (name != null && name.length > MAX_MEMBER_NAME) {
				ui.addNotification(null, E('p', _('A member name has at most %d characters.').format(MAX_MEMBER_NAME)), 'warning');
				return Promise.resolve();
			}
			return form.GridSection.prototype.handleAdd.apply(this, [ ev, name ]);
		};

		o = ms.option(form.Flag, 'enabled', _('Enabled'),
			_('A disabled member keeps its entry but gets no tunnel.'));
		o.default = o.enabled;
		o.editable = true;
		keepAsIs(o);

		o = ms.option(form.Value, 'public_key', _('Public key'),
			_('The member\'s WireGuard public key (44 characters of base64).'));
		o.rmempty = false;
		o.validate = function(section_id, value) {
			if (value == null || value === '')
				return true;
			if (!isWireguardKey(value))
				return _('A WireGuard key: 44 characters of base64 ending in =');
			if (status && status.public_key === value)
				return _('This is this router\'s own key');
			return true;
		};
		o.textvalue = function(section_id) {
			var key = this.cfgvalue(section_id) || '';
			return key.length > 12 ? key.substr(0, 6) + '…' + key.substr(-6) : key;
		};
		// Wide enough for the whole key (44 characters), in a fixed-width font.
		o.renderWidget = function(/* section_id, option_index, cfgvalue */) {
			var widget = form.Value.prototype.renderWidget.apply(this, arguments);
			var input = (widget && widget.querySelector) ? widget.querySelector('input') : null;
			if (input) {
				input.classList.add('meshd-key');
				input.setAttribute('size', 46);
				input.spellcheck = false;
			}
			return widget;
		};

		o = ms.option(form.Value, 'overlay', _('Overlay address'),
			_('The member\'s IPv4 address inside the mesh, if its owner set one; empty: derived from its key.'));
		o.datatype = 'ip4addr("nomask")';
		o.placeholder = _('from the key');

		o = ms.option(form.Value, 'asn', _('AS number'),
			_('The member\'s own AS number, if its owner set one; empty: derived from its key.'));
		o.datatype = 'and(uinteger,range(1,4294967294))';
		o.placeholder = _('from the key');
		o.validate = function(section_id, value) {
			if (value !== '' && value === uci.get('meshd', 'main', 'asn'))
				return _('This is this router\'s own AS number');
			return validateAsn(section_id, value);
		};

		o = ms.option(form.DynamicList, 'prefix', _('Prefixes'),
			_('What the member may announce (its LAN, at most 8); nothing else is accepted from it.'));
		o.datatype = 'cidr';

		o = ms.option(form.DynamicList, 'endpoint', _('Endpoints'),
			_('Where the member can be reached: host:port, a.b.c.d:port or [IPv6]:port. Without one, it is reached once it contacts this router, or through another member.'));
		o.datatype = 'or(hostport,ipaddrport(1))';
		o.placeholder = 'friend.example.net:51820';

		o = ms.option(form.Value, 'overlay6', _('IPv6 overlay address'),
			_('Optional: the member\'s IPv6 address inside the mesh, as its owner set it.'));
		o.datatype = 'ip6addr("nomask")';
		o.modalonly = true;

		o = ms.option(form.Value, 'keepalive', _('WireGuard keepalive'),
			_('Seconds; overrides this router\'s setting (0 = off for this member).'));
		o.datatype = 'range(0,65535)';
		o.modalonly = true;

		o = ms.option(form.Value, 'hold_time', _('BGP hold time'),
			_('Seconds; overrides this router\'s setting.'));
		o.datatype = 'and(uinteger,or(0,range(3,65535)))';
		o.modalonly = true;

		o = ms.option(form.ListValue, 'bfd', _('BFD'),
			_('Fast failure detection on this member\'s tunnel.'));
		o.value('', _('As this router'));
		o.value('1', _('On'));
		o.value('0', _('Off'));
		o.modalonly = true;

		o = ms.option(form.Value, 'bfd_interval', _('BFD interval'),
			_('Milliseconds; overrides this router\'s setting.'));
		o.datatype = 'range(1,10000)';
		o.modalonly = true;
		dependsOn(o, { bfd: '0', '!reverse': true });

		o = ms.option(form.Value, 'bfd_multiplier', _('BFD multiplier'),
			_('Missed packets before the tunnel is declared down; overrides this router\'s setting.'));
		o.datatype = 'range(2,255)';
		o.modalonly = true;
		dependsOn(o, { bfd: '0', '!reverse': true });

		o = ms.option(form.Flag, 'exit', _('Game exit'),
			_('This friend\'s router is a game exit: accept its internet route.'));
		o.default = o.disabled;
		o.modalonly = true;
		keepAsIs(o);

		o = ms.option(form.Flag, 'inviter', _('May bring in friends'),
			_('Friends this router invites, or removes, join or leave your mesh too.'));
		o.default = o.enabled;
		o.modalonly = true;
		keepAsIs(o);

		o = ms.option(form.Flag, 'vouch', _('Brought in by this router'),
			_('You invited this friend, or it invited you: your group record lists it, so the friends you bring in learn of it. Invites set this.'));
		o.default = o.disabled;
		o.modalonly = true;
		keepAsIs(o);

		o = ms.option(form.Value, 'via', _('Brought in by'),
			_('Written by meshd: the friend whose group record brought this router in. Empty when you or an invite added it.'));
		o.datatype = 'uciname';
		o.readonly = true;
		o.modalonly = true;

		o = ms.option(form.Flag, 'removed', _('Removed from the group'),
			_('Out of the group: not used here, and your group record tells every friend, whose routers close their tunnels to it too (as meshd remove does).'));
		o.default = o.disabled;
		o.modalonly = true;
		keepAsIs(o);

		// Beside the map, not in it: LuCI redraws the map's contents on save.
		return m.render().then(function(node) {
			return [ E('style', {}, [ CSS ]), node ];
		});
	}
});
