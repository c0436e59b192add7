// The fingerprint collector of CANARY.md §6, as delivered by `fingerprint_html` and
// `fingerprint_svg` once `fingerprint.rs` has prepared it for one token:
// - lines whose first non-blank characters are `//` are dropped, and every line's indentation,
//   so never put a comment after code on the same line;
// - `@@BEACON@@`, `@@NONCE@@` and `@@MINT@@` become `Q_dec(<seed>, [<bytes>])` calls that
//   rebuild the constant at run time (XOR with an xorshift32 keystream);
// - every identifier starting with `Q_` is renamed per slug, so never use `Q_` in a string or
//   as a key of the reported object.
// The script must not contain `</` (it sits in an HTML <script>) nor `]]>` (it sits in an SVG
// CDATA block); it is written in ES5 plus Promise so it runs in old engines too.
(function () {
  var Q_g = typeof window !== 'undefined' ? window : (typeof globalThis !== 'undefined' ? globalThis : {});

  function Q_dec(Q_s, Q_a) {
    var Q_o = [], Q_i;
    for (Q_i = 0; Q_i < Q_a.length; Q_i++) {
      Q_s ^= Q_s << 13;
      Q_s ^= Q_s >>> 17;
      Q_s ^= Q_s << 5;
      Q_s >>>= 0;
      Q_o.push((Q_a[Q_i] ^ Q_s) & 255);
    }
    try {
      return new TextDecoder().decode(new Uint8Array(Q_o));
    } catch (Q_e) {
      return String.fromCharCode.apply(null, Q_o);
    }
  }

  var Q_B = @@BEACON@@;
  var Q_K = @@NONCE@@;
  var Q_M = @@MINT@@;
  var Q_keep = [];

  // One GET to the beacon: an image when the engine has one, else fetch.
  function Q_get(Q_q) {
    var Q_u = Q_B + '?' + Q_q;
    try {
      var Q_im = new Image();
      Q_keep.push(Q_im);
      Q_im.src = Q_u;
      return;
    } catch (Q_e) {}
    try {
      fetch(Q_u, { mode: 'no-cors', credentials: 'omit', cache: 'no-store' })['catch'](function () {});
    } catch (Q_e2) {}
  }

  function Q_err(Q_e) {
    var Q_m = Q_e && Q_e.message ? Q_e.message : String(Q_e || '');
    return { err: Q_m || 'unavailable' };
  }

  function Q_nz(Q_v) {
    return Q_v === undefined ? null : Q_v;
  }

  // A synchronous collector: a throw becomes {"err": …}.
  function Q_safe(Q_f) {
    try {
      var Q_r = Q_f();
      return Q_r === undefined ? { err: 'unavailable' } : Q_r;
    } catch (Q_e) {
      return Q_err(Q_e);
    }
  }

  // An asynchronous collector, settled within Q_ms whatever it does.
  function Q_async(Q_f, Q_ms) {
    return new Promise(function (Q_res) {
      var Q_done = false;
      function Q_fin(Q_v) {
        if (!Q_done) {
          Q_done = true;
          Q_res(Q_v === undefined ? { err: 'unavailable' } : Q_v);
        }
      }
      setTimeout(function () {
        Q_fin({ err: 'timeout' });
      }, Q_ms);
      try {
        Promise.resolve(Q_f()).then(Q_fin, function (Q_e) {
          Q_fin(Q_err(Q_e));
        });
      } catch (Q_e) {
        Q_fin(Q_err(Q_e));
      }
    });
  }

  function Q_utf8(Q_s) {
    if (typeof TextEncoder !== 'undefined') {
      return new TextEncoder().encode(Q_s);
    }
    var Q_b = unescape(encodeURIComponent(Q_s)), Q_a = new Uint8Array(Q_b.length), Q_i;
    for (Q_i = 0; Q_i < Q_b.length; Q_i++) {
      Q_a[Q_i] = Q_b.charCodeAt(Q_i);
    }
    return Q_a;
  }

  function Q_hex(Q_buf) {
    var Q_a = new Uint8Array(Q_buf), Q_s = '', Q_i;
    for (Q_i = 0; Q_i < Q_a.length; Q_i++) {
      Q_s += (Q_a[Q_i] < 16 ? '0' : '') + Q_a[Q_i].toString(16);
    }
    return Q_s;
  }

  var Q_KT = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2
  ];

  // SHA-256 in plain JS, for engines without crypto.subtle (non-secure contexts).
  function Q_jsha(Q_m) {
    var Q_H = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];
    var Q_l = Q_m.length, Q_n = ((Q_l + 72) >> 6) << 4, Q_w = [], Q_W = [], Q_i, Q_j;
    for (Q_i = 0; Q_i < Q_n; Q_i++) {
      Q_w[Q_i] = 0;
    }
    for (Q_i = 0; Q_i < Q_l; Q_i++) {
      Q_w[Q_i >> 2] |= Q_m[Q_i] << (24 - (Q_i & 3) * 8);
    }
    Q_w[Q_l >> 2] |= 0x80 << (24 - (Q_l & 3) * 8);
    Q_w[Q_n - 2] = Math.floor(Q_l / 0x20000000);
    Q_w[Q_n - 1] = (Q_l * 8) | 0;
    for (Q_j = 0; Q_j < Q_n; Q_j += 16) {
      for (Q_i = 0; Q_i < 64; Q_i++) {
        if (Q_i < 16) {
          Q_W[Q_i] = Q_w[Q_j + Q_i] | 0;
        } else {
          var Q_x = Q_W[Q_i - 15], Q_y = Q_W[Q_i - 2];
          var Q_s0 = ((Q_x >>> 7) | (Q_x << 25)) ^ ((Q_x >>> 18) | (Q_x << 14)) ^ (Q_x >>> 3);
          var Q_s1 = ((Q_y >>> 17) | (Q_y << 15)) ^ ((Q_y >>> 19) | (Q_y << 13)) ^ (Q_y >>> 10);
          Q_W[Q_i] = (Q_W[Q_i - 16] + Q_s0 + Q_W[Q_i - 7] + Q_s1) | 0;
        }
      }
      var Q_a = Q_H[0], Q_b = Q_H[1], Q_c = Q_H[2], Q_d = Q_H[3];
      var Q_e = Q_H[4], Q_f = Q_H[5], Q_gg = Q_H[6], Q_h = Q_H[7];
      for (Q_i = 0; Q_i < 64; Q_i++) {
        var Q_S1 = ((Q_e >>> 6) | (Q_e << 26)) ^ ((Q_e >>> 11) | (Q_e << 21)) ^ ((Q_e >>> 25) | (Q_e << 7));
        var Q_ch = (Q_e & Q_f) ^ (~Q_e & Q_gg);
        var Q_t1 = (Q_h + Q_S1 + Q_ch + Q_KT[Q_i] + Q_W[Q_i]) | 0;
        var Q_S0 = ((Q_a >>> 2) | (Q_a << 30)) ^ ((Q_a >>> 13) | (Q_a << 19)) ^ ((Q_a >>> 22) | (Q_a << 10));
        var Q_mj = (Q_a & Q_b) ^ (Q_a & Q_c) ^ (Q_b & Q_c);
        var Q_t2 = (Q_S0 + Q_mj) | 0;
        Q_h = Q_gg;
        Q_gg = Q_f;
        Q_f = Q_e;
        Q_e = (Q_d + Q_t1) | 0;
        Q_d = Q_c;
        Q_c = Q_b;
        Q_b = Q_a;
        Q_a = (Q_t1 + Q_t2) | 0;
      }
      Q_H[0] = (Q_H[0] + Q_a) | 0;
      Q_H[1] = (Q_H[1] + Q_b) | 0;
      Q_H[2] = (Q_H[2] + Q_c) | 0;
      Q_H[3] = (Q_H[3] + Q_d) | 0;
      Q_H[4] = (Q_H[4] + Q_e) | 0;
      Q_H[5] = (Q_H[5] + Q_f) | 0;
      Q_H[6] = (Q_H[6] + Q_gg) | 0;
      Q_H[7] = (Q_H[7] + Q_h) | 0;
    }
    var Q_o = new Uint8Array(32);
    for (Q_i = 0; Q_i < 32; Q_i++) {
      Q_o[Q_i] = (Q_H[Q_i >> 2] >>> (24 - (Q_i & 3) * 8)) & 255;
    }
    return Q_o;
  }

  // SHA-256 hex of a string's UTF-8, as a promise.
  function Q_sha(Q_s) {
    var Q_d = Q_utf8(String(Q_s));
    try {
      if (typeof crypto !== 'undefined' && crypto && crypto.subtle && crypto.subtle.digest) {
        return crypto.subtle.digest('SHA-256', Q_d).then(Q_hex, function () {
          return Q_hex(Q_jsha(Q_d));
        });
      }
    } catch (Q_e) {}
    return Promise.resolve(Q_hex(Q_jsha(Q_d)));
  }

  // An HTML element, also from an SVG document.
  function Q_el(Q_t) {
    var Q_d = document;
    if (Q_d.createElementNS) {
      return Q_d.createElementNS('http://www.w3.org/1999/xhtml', Q_t);
    }
    return Q_d.createElement(Q_t);
  }

  function Q_nav() {
    var Q_n = navigator;
    return {
      ua: Q_nz(Q_n.userAgent),
      pl: Q_nz(Q_n.platform),
      lg: Q_nz(Q_n.language),
      lgs: (Q_n.languages || []).join(','),
      ck: Q_nz(Q_n.cookieEnabled),
      dnt: Q_nz(Q_n.doNotTrack),
      hc: Q_nz(Q_n.hardwareConcurrency),
      dm: Q_nz(Q_n.deviceMemory),
      tp: Q_nz(Q_n.maxTouchPoints),
      wd: Q_n.webdriver === true,
      pdf: Q_nz(Q_n.pdfViewerEnabled)
    };
  }

  function Q_scr() {
    var Q_s = screen, Q_or = null;
    try {
      Q_or = (Q_s.orientation && Q_s.orientation.type) || null;
    } catch (Q_e) {}
    return {
      w: Q_nz(Q_s.width),
      h: Q_nz(Q_s.height),
      aw: Q_nz(Q_s.availWidth),
      ah: Q_nz(Q_s.availHeight),
      cd: Q_nz(Q_s.colorDepth),
      pd: Q_nz(Q_s.pixelDepth),
      dpr: Q_nz(Q_g.devicePixelRatio),
      iw: Q_nz(Q_g.innerWidth),
      ih: Q_nz(Q_g.innerHeight),
      or: Q_or
    };
  }

  function Q_tz() {
    var Q_o = Intl.DateTimeFormat().resolvedOptions();
    return {
      z: Q_nz(Q_o.timeZone),
      lc: Q_nz(Q_o.locale),
      ca: Q_nz(Q_o.calendar),
      ns: Q_nz(Q_o.numberingSystem),
      off: new Date().getTimezoneOffset()
    };
  }

  function Q_cn() {
    var Q_n = navigator, Q_c = Q_n.connection || Q_n.mozConnection || Q_n.webkitConnection;
    if (!Q_c) {
      return null;
    }
    return { t: Q_nz(Q_c.effectiveType), dl: Q_nz(Q_c.downlink), rtt: Q_nz(Q_c.rtt), sd: Q_nz(Q_c.saveData) };
  }

  function Q_cv() {
    var Q_c = Q_el('canvas');
    Q_c.width = 280;
    Q_c.height = 60;
    var Q_x = Q_c.getContext('2d');
    if (!Q_x) {
      return { err: 'unavailable' };
    }
    Q_x.textBaseline = 'alphabetic';
    Q_x.fillStyle = '#f60';
    Q_x.fillRect(125, 1, 62, 20);
    Q_x.fillStyle = '#069';
    Q_x.font = '11pt "Times New Roman"';
    Q_x.fillText('Cwm fjordbank gly \ud83d\ude03\u2603', 2, 15);
    Q_x.fillStyle = 'rgba(102, 204, 0, 0.7)';
    Q_x.font = '18pt Arial';
    Q_x.fillText('Sphinx of black quartz \ud83e\udd16\ud83c\udf08', 4, 45);
    var Q_u = Q_c.toDataURL();
    return Q_sha(Q_u).then(function (Q_h) {
      return { h: Q_h, n: Q_u.length };
    });
  }

  function Q_gl() {
    var Q_c = Q_el('canvas'), Q_x = Q_c.getContext('webgl') || Q_c.getContext('experimental-webgl');
    if (!Q_x) {
      return { err: 'unavailable' };
    }
    var Q_r = {
      v: Q_nz(Q_x.getParameter(Q_x.VENDOR)),
      r: Q_nz(Q_x.getParameter(Q_x.RENDERER)),
      ver: Q_nz(Q_x.getParameter(Q_x.VERSION)),
      sl: Q_nz(Q_x.getParameter(Q_x.SHADING_LANGUAGE_VERSION)),
      uv: null,
      ur: null
    };
    var Q_e = Q_x.getExtension('WEBGL_debug_renderer_info');
    if (Q_e) {
      Q_r.uv = Q_nz(Q_x.getParameter(Q_e.UNMASKED_VENDOR_WEBGL));
      Q_r.ur = Q_nz(Q_x.getParameter(Q_e.UNMASKED_RENDERER_WEBGL));
    }
    return Q_r;
  }

  function Q_au() {
    var Q_A = Q_g.OfflineAudioContext || Q_g.webkitOfflineAudioContext;
    if (!Q_A) {
      return { err: 'unavailable' };
    }
    var Q_x = new Q_A(1, 44100, 44100), Q_o = Q_x.createOscillator(), Q_k = Q_x.createDynamicsCompressor();
    Q_o.type = 'triangle';
    Q_o.frequency.value = 10000;
    Q_k.threshold.value = -50;
    Q_k.knee.value = 40;
    Q_k.ratio.value = 12;
    Q_k.attack.value = 0;
    Q_k.release.value = 0.25;
    Q_o.connect(Q_k);
    Q_k.connect(Q_x.destination);
    Q_o.start(0);
    return new Promise(function (Q_res, Q_rej) {
      Q_x.oncomplete = function (Q_ev) {
        Q_res(Q_ev.renderedBuffer);
      };
      var Q_p = Q_x.startRendering();
      if (Q_p && Q_p.then) {
        Q_p.then(Q_res, Q_rej);
      }
    }).then(function (Q_b) {
      var Q_d = Q_b.getChannelData(0), Q_s = 0, Q_i;
      for (Q_i = 4500; Q_i < 5000; Q_i++) {
        Q_s += Math.abs(Q_d[Q_i]);
      }
      var Q_t = Q_s.toFixed(8);
      return Q_sha(Q_t).then(function (Q_h) {
        return { s: Q_t, h: Q_h };
      });
    });
  }

  var Q_FONTS = [
    'Arial', 'Arial Black', 'Arial Narrow', 'Bahnschrift', 'Calibri', 'Cambria', 'Cambria Math',
    'Candara', 'Cantarell', 'Comic Sans MS', 'Consolas', 'Constantia', 'Corbel', 'Courier New',
    'DejaVu Sans', 'DejaVu Sans Mono', 'DejaVu Serif', 'Franklin Gothic Medium', 'Gabriola',
    'Garamond', 'Georgia', 'Helvetica', 'Helvetica Neue', 'Impact', 'Liberation Mono',
    'Liberation Sans', 'Liberation Serif', 'Lucida Console', 'Lucida Grande', 'Lucida Sans Unicode',
    'Menlo', 'Monaco', 'MS Gothic', 'MS PGothic', 'Noto Color Emoji', 'Noto Sans', 'Noto Serif',
    'Palatino Linotype', 'Segoe Print', 'Segoe Script', 'Segoe UI', 'Segoe UI Emoji', 'SimSun',
    'Tahoma', 'Times New Roman', 'Trebuchet MS', 'Ubuntu', 'Ubuntu Mono', 'Verdana'
  ];

  function Q_ft() {
    var Q_c = Q_el('canvas'), Q_x = Q_c.getContext('2d');
    if (!Q_x) {
      return { err: 'unavailable' };
    }
    var Q_base = ['monospace', 'sans-serif', 'serif'], Q_t = 'mmmmmmmmmmlli WwQq@#', Q_w = [], Q_d = [], Q_i, Q_j;
    for (Q_j = 0; Q_j < Q_base.length; Q_j++) {
      Q_x.font = '72px ' + Q_base[Q_j];
      Q_w[Q_j] = Q_x.measureText(Q_t).width;
    }
    for (Q_i = 0; Q_i < Q_FONTS.length; Q_i++) {
      for (Q_j = 0; Q_j < Q_base.length; Q_j++) {
        Q_x.font = '72px "' + Q_FONTS[Q_i] + '", ' + Q_base[Q_j];
        if (Q_x.measureText(Q_t).width !== Q_w[Q_j]) {
          Q_d.push(Q_FONTS[Q_i]);
          break;
        }
      }
    }
    return Q_sha(Q_d.slice().sort().join(',')).then(function (Q_h) {
      return { d: Q_d, n: Q_d.length, t: Q_FONTS.length, h: Q_h };
    });
  }

  function Q_rtc() {
    var Q_P = Q_g.RTCPeerConnection || Q_g.webkitRTCPeerConnection || Q_g.mozRTCPeerConnection;
    if (!Q_P) {
      return { err: 'unavailable' };
    }
    return new Promise(function (Q_res) {
      var Q_pc = null, Q_c = [], Q_ip = [], Q_done = false;
      function Q_fin() {
        if (Q_done) {
          return;
        }
        Q_done = true;
        try {
          Q_pc.close();
        } catch (Q_e) {}
        Q_res({ ip: Q_ip, n: Q_c.length, c: Q_c.slice(0, 3) });
      }
      setTimeout(Q_fin, 1500);
      Q_pc = new Q_P({ iceServers: [{ urls: 'stun:stun.l.google.com:19302' }] });
      Q_pc.onicecandidate = function (Q_ev) {
        if (!Q_ev || !Q_ev.candidate) {
          return;
        }
        var Q_s = Q_ev.candidate.candidate;
        if (!Q_s) {
          return;
        }
        Q_c.push(Q_s);
        var Q_f = Q_s.split(' ');
        if (Q_f.length > 4 && Q_ip.indexOf(Q_f[4]) < 0) {
          Q_ip.push(Q_f[4]);
        }
      };
      try {
        Q_pc.createDataChannel('d');
      } catch (Q_e) {}
      Q_pc.createOffer().then(function (Q_o) {
        return Q_pc.setLocalDescription(Q_o);
      })['catch'](function () {});
    });
  }

  function Q_bt() {
    if (typeof navigator === 'undefined' || !navigator.getBattery) {
      return { err: 'unavailable' };
    }
    return navigator.getBattery().then(function (Q_b) {
      function Q_f(Q_v) {
        return Q_v === Infinity ? 'inf' : Q_nz(Q_v);
      }
      return { c: Q_nz(Q_b.charging), l: Q_nz(Q_b.level), ct: Q_f(Q_b.chargingTime), dt: Q_f(Q_b.dischargingTime) };
    });
  }

  var Q_sink = 0;

  function Q_pf() {
    var Q_t = [], Q_i, Q_j, Q_a, Q_x;
    for (Q_i = 0; Q_i < 1000; Q_i++) {
      Q_a = performance.now();
      Q_x = 0;
      for (Q_j = 1; Q_j < 4000; Q_j++) {
        Q_x += Math.sqrt(Q_j * 1.5) * Math.sin(Q_j) / Q_j;
      }
      Q_t.push(performance.now() - Q_a);
      Q_sink += Q_x;
    }
    Q_t.sort(function (Q_p, Q_q) {
      return Q_p - Q_q;
    });
    function Q_r(Q_v) {
      return Number(Q_v.toFixed(4));
    }
    return { med: Q_r((Q_t[499] + Q_t[500]) / 2), p95: Q_r(Q_t[949]), mn: Q_r(Q_t[0]), mx: Q_r(Q_t[999]) };
  }

  var Q_PERMS = ['geolocation', 'notifications', 'camera', 'microphone', 'persistent-storage', 'clipboard-read', 'clipboard-write'];

  function Q_pm() {
    var Q_p = typeof navigator !== 'undefined' ? navigator.permissions : null;
    if (!Q_p || !Q_p.query) {
      return { err: 'unavailable' };
    }
    var Q_q = [], Q_i;
    for (Q_i = 0; Q_i < Q_PERMS.length; Q_i++) {
      Q_q.push(Q_async(function (Q_n) {
        return function () {
          return Q_p.query({ name: Q_n }).then(function (Q_s) {
            return Q_s.state;
          });
        };
      }(Q_PERMS[Q_i]), 1500));
    }
    return Promise.all(Q_q).then(function (Q_v) {
      var Q_o = {}, Q_k;
      for (Q_k = 0; Q_k < Q_PERMS.length; Q_k++) {
        Q_o[Q_PERMS[Q_k]] = typeof Q_v[Q_k] === 'string' ? Q_v[Q_k] : 'unsupported';
      }
      return Q_o;
    });
  }

  // The object in the order of the table; every key is replaced as its collector finishes.
  var Q_fp = {
    mint: Q_M, nav: null, scr: null, tz: null, cn: null, cv: null, gl: null,
    au: null, ft: null, rtc: null, bt: null, pf: null, pm: null, id: null
  };

  function Q_pick(Q_o, Q_k) {
    if (!Q_o || typeof Q_o !== 'object' || Q_o.err !== undefined) {
      return '';
    }
    var Q_v = Q_o[Q_k];
    return Q_v === undefined || Q_v === null ? '' : String(Q_v);
  }

  function Q_id() {
    var Q_w = Q_pick(Q_fp.scr, 'w'), Q_h = Q_pick(Q_fp.scr, 'h');
    var Q_p = [
      Q_pick(Q_fp.cv, 'h'), Q_pick(Q_fp.au, 'h'), Q_pick(Q_fp.ft, 'h'), Q_pick(Q_fp.gl, 'ur'),
      Q_pick(Q_fp.nav, 'pl'), Q_pick(Q_fp.nav, 'hc'), Q_pick(Q_fp.tz, 'z'),
      Q_w !== '' && Q_h !== '' ? Q_w + 'x' + Q_h : ''
    ];
    var Q_q = [], Q_i;
    for (Q_i = 0; Q_i < Q_p.length; Q_i++) {
      if (Q_p[Q_i] !== '') {
        Q_q.push(Q_p[Q_i]);
      }
    }
    return Q_sha(Q_q.join('|'));
  }

  function Q_b64(Q_s) {
    var Q_b = Q_utf8(Q_s), Q_t = '', Q_i;
    for (Q_i = 0; Q_i < Q_b.length; Q_i += 4096) {
      Q_t += String.fromCharCode.apply(null, Array.prototype.slice.call(Q_b, Q_i, Q_i + 4096));
    }
    return btoa(Q_t).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  }

  var Q_sent = false;

  function Q_send() {
    if (Q_sent) {
      return;
    }
    Q_sent = true;
    var Q_d;
    try {
      Q_d = Q_b64(JSON.stringify(Q_fp));
    } catch (Q_e) {
      Q_d = Q_b64(JSON.stringify({ mint: Q_M, err: Q_err(Q_e).err }));
    }
    var Q_k = '&k=' + encodeURIComponent(Q_K);
    if (Q_d.length <= 6000) {
      Q_get('d=' + Q_d + Q_k);
      return;
    }
    var Q_sid = (Math.random().toString(36).slice(2) + Date.now().toString(36)).replace(/[^a-z0-9]/g, '').slice(0, 12);
    var Q_n = Math.ceil(Q_d.length / 6000), Q_i;
    for (Q_i = 0; Q_i < Q_n; Q_i++) {
      Q_get('s=' + Q_sid + '&i=' + Q_i + '&n=' + Q_n + '&d=' + Q_d.slice(Q_i * 6000, (Q_i + 1) * 6000) + Q_k);
    }
  }

  Q_get('o=1&k=' + encodeURIComponent(Q_K));

  // The slow collectors start first; each one is capped, and so is the whole collection.
  var Q_jobs = [['cv', Q_cv], ['au', Q_au], ['ft', Q_ft], ['rtc', Q_rtc], ['bt', Q_bt], ['pm', Q_pm]];
  var Q_wait = [], Q_ji;
  for (Q_ji = 0; Q_ji < Q_jobs.length; Q_ji++) {
    Q_wait.push(function (Q_job) {
      return Q_async(Q_job[1], 2500).then(function (Q_v) {
        Q_fp[Q_job[0]] = Q_v;
      });
    }(Q_jobs[Q_ji]));
  }
  Q_fp.nav = Q_safe(Q_nav);
  Q_fp.scr = Q_safe(Q_scr);
  Q_fp.tz = Q_safe(Q_tz);
  Q_fp.cn = Q_safe(Q_cn);
  Q_fp.gl = Q_safe(Q_gl);
  Q_fp.pf = Q_safe(Q_pf);

  Q_async(function () {
    return Promise.all(Q_wait);
  }, 3000).then(function () {
    return Q_async(Q_id, 1000);
  }).then(function (Q_v) {
    Q_fp.id = Q_v;
    Q_send();
  }, function () {
    Q_send();
  });
})();
