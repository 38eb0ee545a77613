// codeexec JavaScript harness: runs programs in Node inside the sandbox and reports
// each one's outcome in the report format of harness.py (see harness.go).
//
// Run as `node -e SOURCE -- NAME ARGS...`. Two modes:
//   - one-shot (cold path, warm one-shot child): the program is read from fd 4, the
//     report is written as one JSON object to fd 3 when the process exits, as
//     harness.py does;
//   - serve (CODEEXEC_JS_SERVE=1, a session's context): fd 3 is a socket to the
//     context process (node.py), which sends one JSON line per run
//     ({"code", "argv", "env"}) and gets the run's report back as one JSON line.
//
// Every program runs as a script in the process's main context, so a session keeps
// its variables: top-level let, const and class become var (a later run may declare
// them again, as in a REPL), and a program with top-level await is wrapped in an
// async function whose declarations are hoisted to the global scope. The value of
// the last expression statement is the result. A static import declaration becomes
// the const of an awaited import() on its own lines (a script cannot import, and a
// module's bindings would not outlive its run); export is refused, a program has no
// importer.
//
// Everything here is inside one function: nothing of the harness is a global the
// program could collide with.
(function harness() {
  'use strict';
  const fs = require('fs');
  const vm = require('vm');
  const util = require('util');

  const FILENAME = '<code>';
  const env = process.env;
  const cap = (k) => {
    const v = Number(env[k]);
    delete env[k];
    return v;
  };
  const MAX_RESULT = cap('CODEEXEC_MAX_RESULT');
  const MAX_ERROR_NAME = cap('CODEEXEC_MAX_ERROR_NAME');
  const MAX_ERROR_MESSAGE = cap('CODEEXEC_MAX_ERROR_MESSAGE');
  const MAX_TRACEBACK = cap('CODEEXEC_MAX_TRACEBACK');
  cap('CODEEXEC_MAX_IMAGES');
  cap('CODEEXEC_MAX_IMAGE_BYTES');
  const SERVE = env.CODEEXEC_JS_SERVE === '1';
  delete env.CODEEXEC_JS_SERVE;

  // stdout and stderr write synchronously, as they would to a file. Node's own
  // streams for a pipe queue a write the full pipe refuses until the event loop runs
  // again, which a loop that only prints never lets it: the output would pile up in
  // memory, and the run end in the memory limit before the server saw the output
  // limit passed. A blocking write holds the program at the pipe instead.
  const pause = new Int32Array(new SharedArrayBuffer(4));
  function writeAll(fd, data) {
    let off = 0;
    while (off < data.length) {
      try {
        off += fs.writeSync(fd, data, off, data.length - off);
      } catch (e) {
        if (e.code !== 'EAGAIN') throw e;
        Atomics.wait(pause, 0, 0, 1); // someone made the pipe non-blocking: wait for room
      }
    }
  }
  function syncStream(fd) {
    const { Writable } = require('stream');
    const s = new Writable({
      decodeStrings: true,
      write(chunk, _encoding, cb) {
        try {
          writeAll(fd, chunk);
        } catch (e) {
          return cb(e);
        }
        cb();
      },
    });
    s.fd = fd;
    s.isTTY = false;
    s._isStdio = true;
    s.destroySoon = s.destroy;
    s._destroy = (err, cb) => cb(err); // stdio is never closed by the program's end()
    return s;
  }
  for (const [name, fd] of [['stdout', 1], ['stderr', 2]]) {
    let stream;
    Object.defineProperty(process, name, {
      configurable: true,
      enumerable: true,
      get: () => stream || (stream = syncStream(fd)),
    });
  }

  // Debian's node-acorn, a dependency of its nodejs. Without it programs still run,
  // but top-level await is not rewritten and let/const cannot be declared twice.
  let acorn = null;
  try {
    acorn = require('/usr/share/nodejs/acorn');
  } catch (e) {
    acorn = null;
  }

  // cut returns text cut to at most limit bytes of UTF-8 on a character boundary
  // (its end with tail), and whether it was cut.
  function cut(text, limit, tail) {
    const data = Buffer.from(text, 'utf8');
    if (data.length <= limit) return [text, false];
    if (tail) {
      let start = data.length - limit;
      while (start < data.length && (data[start] & 0xc0) === 0x80) start++;
      return [data.subarray(start).toString('utf8'), true];
    }
    let end = limit;
    while (end > 0 && (data[end] & 0xc0) === 0x80) end--;
    return [data.subarray(0, end).toString('utf8'), true];
  }

  function text(f) {
    try {
      return String(f());
    } catch (e) {
      return '<conversion failed>';
    }
  }

  // userStack keeps the program's own frames: the harness's and Node's are noise.
  function userStack(err) {
    const stack = text(() => err.stack);
    const lines = stack.split('\n');
    const keep = [];
    let frames = false;
    for (const line of lines) {
      if (/^\s+at /.test(line)) {
        frames = true;
        if (line.includes(FILENAME)) keep.push(line);
      } else if (!frames) {
        keep.push(line);
      }
    }
    return keep.join('\n') + '\n';
  }

  // errorOf is the report's error for a thrown value, each part within its cap; the
  // whole stack is returned as well, for stderr.
  function errorOf(thrown) {
    let name;
    let message;
    let full;
    if (thrown instanceof Error || (thrown !== null && typeof thrown === 'object' && 'stack' in thrown)) {
      name = text(() => thrown.name || (thrown.constructor && thrown.constructor.name) || 'Error');
      message = text(() => thrown.message);
      full = userStack(thrown);
    } else {
      name = 'Uncaught';
      message = text(() => util.inspect(thrown));
      full = 'Uncaught ' + message + '\n';
    }
    const [n, cn] = cut(name, MAX_ERROR_NAME);
    const [m, cm] = cut(message, MAX_ERROR_MESSAGE);
    const [t, ct] = cut(full, MAX_TRACEBACK, true);
    return [{ name: n, message: m, traceback: t, truncated: cn || cm || ct }, full];
  }

  function inspect(value) {
    let s;
    try {
      s = util.inspect(value, { depth: 4, maxArrayLength: 200, maxStringLength: MAX_RESULT });
    } catch (e) {
      s = '<inspect failed: ' + text(() => e.message) + '>';
    }
    return cut(s, MAX_RESULT);
  }

  // Names a declaration pattern binds.
  function boundNames(p, out) {
    if (!p) return out;
    switch (p.type) {
      case 'Identifier': out.push(p.name); break;
      case 'ObjectPattern': for (const q of p.properties) boundNames(q.type === 'RestElement' ? q.argument : q.value, out); break;
      case 'ArrayPattern': for (const q of p.elements) boundNames(q, out); break;
      case 'RestElement': boundNames(p.argument, out); break;
      case 'AssignmentPattern': boundNames(p.left, out); break;
    }
    return out;
  }

  // hasTopLevelAwait looks for await outside any function.
  function hasTopLevelAwait(node) {
    if (!node || typeof node.type !== 'string') return false;
    switch (node.type) {
      case 'AwaitExpression': return true;
      case 'ForOfStatement': if (node.await) return true; break;
      case 'FunctionDeclaration': case 'FunctionExpression': case 'ArrowFunctionExpression':
        return false;
    }
    for (const k of Object.keys(node)) {
      const v = node[k];
      if (Array.isArray(v)) {
        for (const c of v) if (c && hasTopLevelAwait(c)) return true;
      } else if (v && typeof v === 'object' && typeof v.type === 'string' && hasTopLevelAwait(v)) {
        return true;
      }
    }
    return false;
  }

  // nestedModuleSyntax is the first import or export declaration within node, node
  // itself only when it is not at the top level.
  function nestedModuleSyntax(node, top) {
    if (!node || typeof node.type !== 'string') return null;
    if (!top && /^(Import|Export\w+)Declaration$/.test(node.type)) return node;
    for (const k of Object.keys(node)) {
      const v = node[k];
      if (Array.isArray(v)) {
        for (const c of v) {
          const found = c && nestedModuleSyntax(c, false);
          if (found) return found;
        }
      } else if (v && typeof v === 'object' && typeof v.type === 'string') {
        const found = nestedModuleSyntax(v, false);
        if (found) return found;
      }
    }
    return null;
  }

  function lineOf(source, at) {
    return source.slice(0, at).split('\n').length;
  }

  // importOf is the statement an import declaration stands for: a const bound to
  // what import() resolves to, as Node's REPL rewrites it. The newlines of the
  // declaration follow it, so that the lines after it keep their numbers.
  function importOf(source, st) {
    const from = 'await import(' + source.slice(st.source.start, st.source.end) + ')';
    let namespace = null;
    const fields = [];
    for (const sp of st.specifiers) {
      if (sp.type === 'ImportNamespaceSpecifier') namespace = sp.local.name;
      else if (sp.type === 'ImportDefaultSpecifier') fields.push('default: ' + sp.local.name);
      else if (sp.imported.type === 'Identifier' && sp.imported.name === sp.local.name) fields.push(sp.local.name);
      else fields.push((sp.imported.type === 'Identifier' ? sp.imported.name : sp.imported.raw) + ': ' + sp.local.name);
    }
    let out;
    if (namespace) out = 'const ' + namespace + ' = ' + from + (fields.length ? ', { ' + fields.join(', ') + ' } = ' + namespace : '') + ';';
    else if (fields.length) out = 'const { ' + fields.join(', ') + ' } = ' + from + ';';
    else out = from + ';';
    return out + '\n'.repeat(source.slice(st.start, st.end).split('\n').length - 1);
  }

  // moduleSyntax rewrites the program's top-level import declarations (importOf) and
  // refuses export, whose SyntaxError from V8 ("Unexpected token 'export'") does not
  // say why. It returns the source unchanged when there is neither.
  function moduleSyntax(source, body) {
    let out = '';
    let at = 0;
    for (const st of body) {
      if (/^Export\w+Declaration$/.test(st.type)) {
        throw new SyntaxError('export is not supported in a program (line ' + lineOf(source, st.start) +
          '): a program runs as a script, not a module; declare the value without export');
      }
      if (st.type !== 'ImportDeclaration') continue;
      out += source.slice(at, st.start) + importOf(source, st);
      at = st.end;
    }
    return at === 0 ? source : out + source.slice(at);
  }

  // prepare rewrites source so that its top-level declarations live on as globals.
  // It returns the script, whether its value is a promise of the result and whether
  // the program ends with an expression; null when it cannot parse the source (V8
  // then reports the error itself). It throws a SyntaxError for module syntax it
  // refuses.
  function prepare(source) {
    if (!acorn) return null;
    const options = { ecmaVersion: 'latest', sourceType: 'script', allowAwaitOutsideFunction: true, allowHashBang: true, allowImportExportEverywhere: true };
    let ast;
    try {
      ast = acorn.parse(source, options);
    } catch (e) {
      return null;
    }
    if (/\b(import|export)\b/.test(source)) {
      let nested = null;
      for (const st of ast.body) if (!nested) nested = nestedModuleSyntax(st, true);
      if (nested) {
        throw new SyntaxError((nested.type === 'ImportDeclaration' ? 'import' : 'export') +
          ' declarations may only appear at the top level of a program (line ' + lineOf(source, nested.start) + ')');
      }
      const rewritten = moduleSyntax(source, ast.body);
      if (rewritten !== source) {
        source = rewritten;
        ast = acorn.parse(source, options);
      }
    }
    const body = ast.body;
    const wrap = body.some(hasTopLevelAwait);
    const edits = []; // [start, end, replacement], in order
    const hoisted = [];
    const functions = [];
    const last = body.length ? body[body.length - 1] : null;
    for (const st of body) {
      if (st.type === 'VariableDeclaration') {
        if (!wrap) {
          if (st.kind !== 'var') edits.push([st.start, st.start + st.kind.length, 'var']);
          continue;
        }
        const parts = [];
        for (const d of st.declarations) {
          boundNames(d.id, hoisted);
          if (d.init) parts.push('(' + source.slice(d.id.start, d.id.end) + ' = ' + source.slice(d.init.start, d.init.end) + ')');
          else if (st.kind !== 'var') parts.push('(' + source.slice(d.id.start, d.id.end) + ' = undefined)');
        }
        edits.push([st.start, st.end, ';' + (parts.length ? 'void (' + parts.join(', ') + ');' : '')]);
      } else if (st.type === 'ClassDeclaration' && st.id) {
        if (wrap) {
          hoisted.push(st.id.name);
          edits.push([st.start, st.start, ';' + st.id.name + ' = ']);
          edits.push([st.end, st.end, ';']);
        } else {
          edits.push([st.start, st.start, 'var ' + st.id.name + ' = ']);
          edits.push([st.end, st.end, ';']);
        }
      } else if (st.type === 'FunctionDeclaration' && wrap && st.id) {
        functions.push(st.id.name);
      } else if (st === last && st.type === 'ExpressionStatement' && wrap) {
        edits.push([st.start, st.start, 'return (']);
        edits.push([st.expression.end, st.end, ');']);
      }
    }
    let out = '';
    let at = 0;
    for (const [s, e, r] of edits) {
      out += source.slice(at, s) + r;
      at = e;
    }
    out += source.slice(at);
    if (!wrap) return { script: out, async: false, expressionLast: !!last && last.type === 'ExpressionStatement' };
    // One line of prologue, so that the program's line numbers stay.
    const vars = [...new Set(hoisted.concat(functions))];
    const pre = (vars.length ? 'var ' + vars.join(', ') + '; ' : '') + '(async () => { ' +
      functions.map((f) => 'globalThis[' + JSON.stringify(f) + '] = ' + f + '; ').join('');
    return { script: pre + out + '\n})()', async: true };
  }

  // compile makes the program's script; import() in it loads modules as the main
  // context does (Node 20's vm leaves it unsupported otherwise), without the
  // experimental-feature warning the option prints, which is Node's, not the program's.
  const importDynamically = vm.constants && vm.constants.USE_MAIN_CONTEXT_DEFAULT_LOADER;
  if (importDynamically) {
    const emitWarning = process.emitWarning;
    process.emitWarning = function (warning, ...rest) {
      if (String((warning && warning.message) || warning).includes('USE_MAIN_CONTEXT_DEFAULT_LOADER')) return;
      return emitWarning.call(this, warning, ...rest);
    };
  }
  function compile(script) {
    const options = { filename: FILENAME };
    if (importDynamically) options.importModuleDynamically = importDynamically;
    return new vm.Script(script, options);
  }

  // evaluate runs source in the main context and returns a promise of its result
  // (undefined when the program does not end with an expression).
  async function evaluate(source) {
    const p = prepare(source);
    let script;
    let expressionLast = true;
    if (p) {
      script = p.script;
      if (!p.async) expressionLast = p.expressionLast;
    } else {
      script = source;
    }
    const compiled = compile(script);
    const value = compiled.runInThisContext({ breakOnSigint: true, displayErrors: false });
    if (p && p.async) return await value;
    return expressionLast ? value : undefined;
  }

  function flush() {
    // Writes to pipes and files are synchronous in Node on Linux: nothing to wait for.
  }

  function reportOf(outcome) {
    const out = { ok: true, result: null, result_truncated: false, error: null, images: [], images_truncated: false, exit_code: 0 };
    if (outcome.exit !== undefined) {
      out.exit_code = outcome.exit & 0xff;
      if (out.exit_code !== 0) {
        out.ok = false;
        out.error = { name: 'Exit', message: 'process.exit(' + outcome.exit + ')', traceback: '', truncated: false };
      }
    } else if (outcome.error !== undefined) {
      out.ok = false;
      out.exit_code = 1;
      const [e, full] = errorOf(outcome.error);
      out.error = e;
      process.stderr.write(full);
    } else if (outcome.value !== undefined) {
      [out.result, out.result_truncated] = inspect(outcome.value);
    }
    return out;
  }

  function setArgv(argv) {
    process.argv = [process.execPath].concat(argv && argv.length ? [argv[0] || FILENAME].concat(argv.slice(1)) : [FILENAME]);
  }

  // oneShot runs one program and reports it when the process exits, once the event
  // loop is empty (or the program exits), as `node file.js` would end. send writes
  // the report.
  function oneShot(source, send) {
    const outcome = {};
    let reported = false;
    const report = (code) => {
      if (reported) return;
      reported = true;
      if (outcome.error === undefined && code) outcome.exit = code;
      const r = reportOf(outcome);
      try {
        send(JSON.stringify(r));
      } catch (e) {
        // The program closed fd 3: the server reports its exit status alone.
      }
      return r.exit_code;
    };
    process.on('exit', (code) => { report(code); });
    const fail = (e) => {
      outcome.error = e;
      process.exitCode = report(1);
      process.exit(process.exitCode);
    };
    process.on('uncaughtException', fail);
    evaluate(source).then((v) => { outcome.value = v; }, fail);
  }

  // ExitRun is thrown by process.exit in a session: the run ends, the context lives
  // on, as a Python session outlives sys.exit.
  class ExitRun {
    constructor(code) { this.code = code; }
  }

  // warmUp compiles what every run uses — acorn's parser, vm, util.inspect, the
  // stdout stream — while the session's Node waits for its first run (a pooled
  // sandbox's), so that the first run does not pay for it.
  function warmUp() {
    try {
      prepare('const a = [1, {b: `c${2}`}]; let d = await Promise.resolve(a);\n' +
        'class K { m() { return this } } function f(x, ...y) { for (const i of y) x += i; return x }\nf(1, 2) + d.length');
      inspect([1, 'a', { b: null }, new Map(), 1.5]);
      compile('1 + 1').runInThisContext();
      void process.stdout;
      void process.stderr;
    } catch (e) {
      // Only a cost: the run does the same and reports what fails.
    }
  }

  function serve() {
    warmUp();
    const net = require('net');
    const sock = new net.Socket({ fd: 3, readable: true, writable: true });
    const exit = process.exit;
    // An interrupt outside the program's synchronous part (breakOnSigint) must not
    // end Node, whose globals are the session's.
    process.on('SIGINT', () => {});
    let pending = null; // an error thrown by a callback between runs
    let running = null;
    process.exit = (code) => {
      throw new ExitRun(code === undefined ? (process.exitCode || 0) : Number(code) || 0);
    };
    process.on('uncaughtException', (e) => {
      if (e instanceof ExitRun) return;
      if (running) running.error = e;
      else pending = e;
    });
    const queue = [];
    let buf = '';
    let busy = false;
    const next = async () => {
      if (busy || queue.length === 0) return;
      busy = true;
      const msg = queue.shift();
      if (msg.drain) {
        // The sandbox's one run (a pooled sandbox): it ends as a one-shot run does,
        // and Node with it. The socket no longer keeps the loop alive.
        sock.pause();
        sock.unref();
        process.exit = exit;
        process.removeAllListeners('uncaughtException');
        for (const kv of msg.env || []) {
          const i = kv.indexOf('=');
          if (i > 0) env[kv.slice(0, i)] = kv.slice(i + 1);
        }
        setArgv(msg.argv || []);
        oneShot(msg.code, (line) => fs.writeSync(3, line + '\n'));
        return;
      }
      for (const kv of msg.env || []) {
        const i = kv.indexOf('=');
        if (i > 0) env[kv.slice(0, i)] = kv.slice(i + 1);
      }
      setArgv(msg.argv || []);
      const outcome = {};
      running = outcome;
      if (pending) {
        process.stderr.write(errorOf(pending)[1]);
        pending = null;
      }
      try {
        outcome.value = await evaluate(msg.code);
      } catch (e) {
        if (e instanceof ExitRun) outcome.exit = e.code;
        else outcome.error = e;
      }
      // An error a callback threw during the run is the run's.
      if (outcome.error === undefined && outcome.exit === undefined && running.error !== undefined) {
        outcome.error = running.error;
        delete outcome.value;
      }
      running = null;
      for (const kv of msg.env || []) {
        const i = kv.indexOf('=');
        if (i > 0) delete env[kv.slice(0, i)];
      }
      sock.write(JSON.stringify(reportOf(outcome)) + '\n');
      busy = false;
      next();
    };
    sock.setEncoding('utf8');
    sock.on('data', (chunk) => {
      buf += chunk;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        queue.push(JSON.parse(line));
      }
      next();
    });
    sock.on('end', () => process.reallyExit(0));
    sock.on('error', () => process.reallyExit(2));
  }

  if (SERVE) {
    serve();
  } else {
    const source = fs.readFileSync(4, 'utf8');
    fs.closeSync(4);
    setArgv(process.argv.slice(1));
    oneShot(source, (report) => {
      fs.writeSync(3, report);
      fs.closeSync(3);
    });
  }
})();
