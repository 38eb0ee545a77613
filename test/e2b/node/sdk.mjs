// Drives codeexec's E2B API with the unmodified e2b and @e2b/code-interpreter
// packages. E2B_API_URL, E2B_SANDBOX_URL and E2B_API_KEY point them at it. Each
// step prints one JSON line {step, ok, detail}; the Go test checks them.
import { Sandbox } from '@e2b/code-interpreter'

const steps = []
function report(step, ok, detail) {
  console.log(JSON.stringify({ step, ok, detail: detail === undefined ? '' : String(detail) }))
}
async function step(name, fn) {
  const t0 = performance.now()
  const took = () => `${Math.round(performance.now() - t0)}ms`
  try {
    const detail = await fn()
    report(name, true, `${detail}; ${took()}`)
  } catch (e) {
    report(name, false, `${e?.name}: ${e?.message}; ${took()}`)
  }
}
function check(cond, msg) {
  if (!cond) throw new Error(msg)
}

const which = new Set(process.argv.slice(2))
const want = (s) => which.size === 0 || which.has(s)

const sbx = await Sandbox.create({ metadata: { suite: 'codeexec-e2b' }, timeoutMs: 120_000 })
report('create', true, sbx.sandboxId)

if (want('runCode')) {
  await step('runCode.state', async () => {
    await sbx.runCode('x = 41')
    const ex = await sbx.runCode('x + 1')
    check(ex.text === '42', `x + 1 gave text ${JSON.stringify(ex.text)}, want "42"`)
    check(ex.error === undefined, `unexpected error ${JSON.stringify(ex.error)}`)
    return ex.text
  })
  await step('runCode.error', async () => {
    const ex = await sbx.runCode('1/0')
    check(ex.error && ex.error.name === 'ZeroDivisionError', `error ${JSON.stringify(ex.error)}, want ZeroDivisionError`)
    check(ex.error.traceback.includes('ZeroDivisionError'), `traceback ${JSON.stringify(ex.error.traceback)} does not name it`)
    return ex.error.value
  })
  await step('runCode.figure', async () => {
    const ex = await sbx.runCode('import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [4, 1, 9])\nplt.show()')
    check(ex.error === undefined, `unexpected error ${JSON.stringify(ex.error)}`)
    const png = ex.results.find((r) => r.png)
    check(png, `no png among ${ex.results.length} results`)
    const head = Buffer.from(png.png, 'base64').subarray(0, 8).toString('hex')
    check(head === '89504e470d0a1a0a', `png starts with ${head}, not the PNG signature`)
    return `${png.png.length} base64 bytes`
  })
  await step('runCode.onStdout', async () => {
    const seen = []
    const ex = await sbx.runCode('import time\nprint("first", flush=True)\ntime.sleep(2)\nprint("second", flush=True)', {
      onStdout: (m) => seen.push({ line: m.line, at: Date.now() }),
    })
    const text = seen.map((s) => s.line).join('')
    check(text === 'first\nsecond\n', `streamed ${JSON.stringify(text)}`)
    check(ex.logs.stdout.join('') === 'first\nsecond\n', `logs.stdout ${JSON.stringify(ex.logs.stdout)}`)
    // The program sleeps 2s between its lines: streamed, they arrive apart; sent
    // at the end, together.
    const gap = seen[seen.length - 1].at - seen[0].at
    check(gap >= 1000, `the lines arrived ${gap}ms apart: not streamed`)
    return `${gap}ms apart`
  })
  await step('runCode.timeout', async () => {
    let err
    const t0 = Date.now()
    try {
      await sbx.runCode('import time\ntime.sleep(60)', { timeoutMs: 1500 })
    } catch (e) {
      err = e
    }
    check(err, 'a 60s sleep with timeoutMs 1500 did not fail')
    // The sandbox and its state survive the interrupted execution, which stopped:
    // the next run does not wait for the 60s sleep.
    const ex = await sbx.runCode('x')
    const waited = Date.now() - t0
    check(waited < 30_000, `the next run answered after ${waited}ms: the sleep was not interrupted`)
    check(ex.text === '41', `after the interrupt x gave ${JSON.stringify(ex.text)} (error ${JSON.stringify(ex.error)})`)
    return `${err.name}, next run answered after ${Date.now() - t0}ms`
  })
  await step('runCode.contexts', async () => {
    const ctx = await sbx.createCodeContext({ cwd: '/tmp' })
    await sbx.runCode('y = "in ctx"', { context: ctx })
    const here = await sbx.runCode('y, __import__("os").getcwd()', { context: ctx })
    check(here.text === "('in ctx', '/tmp')", `in the context: ${JSON.stringify(here.text)} ${JSON.stringify(here.error)}`)
    const there = await sbx.runCode('y')
    check(there.error && there.error.name === 'NameError', `the default context sees y: ${JSON.stringify(there.text)}`)
    const list = await sbx.listCodeContexts()
    check(list.some((c) => c.id === ctx.id), `list ${JSON.stringify(list)}`)
    await sbx.restartCodeContext(ctx)
    const fresh = await sbx.runCode('y', { context: ctx })
    check(fresh.error && fresh.error.name === 'NameError', `y after a restart: ${JSON.stringify(fresh.text)}`)
    await sbx.removeCodeContext(ctx)
    let err
    try {
      await sbx.runCode('1', { context: ctx })
    } catch (e) {
      err = e
    }
    check(err, 'a removed context still runs code')
    return ctx.id
  })
}

if (want('kernel')) {
  // IPython's semantics in a Python context (internal/sandbox/harness/kernel.py).
  await step('kernel.dataframe', async () => {
    const ex = await sbx.runCode('import pandas as pd\npd.DataFrame({"a": [1, 2], "b": [0.5, None]})')
    const r = ex.results[0]
    check(ex.results.length === 1 && r.isMainResult, `results ${JSON.stringify(ex.results)}`)
    check(r.html && r.html.includes('<table'), `html ${JSON.stringify(r.html)}`)
    check(JSON.stringify(r.data) === '{"a":[1,2],"b":[0.5,null]}', `data ${JSON.stringify(r.data)}`)
    check(r.text.includes('0.5'), `text ${JSON.stringify(r.text)}`)
    return r.formats().join(',')
  })
  await step('kernel.display', async () => {
    const seen = []
    const ex = await sbx.runCode(
      'from IPython.display import HTML, Markdown\nprint("before")\ndisplay("shown")\ndisplay(HTML("<b>bold</b>"), Markdown("# title"))\n7',
      { onResult: (r) => seen.push(r) })
    const [a, b, c, d] = ex.results
    check(ex.results.length === 4, `${ex.results.length} results: ${JSON.stringify(ex.results)}`)
    check(a.text === 'shown' && !a.isMainResult, `display("shown") gave ${JSON.stringify(a)}`)
    check(b.html === '<b>bold</b>' && c.markdown === '# title', `HTML/Markdown gave ${JSON.stringify([b, c])}`)
    check(d.text === '7' && d.isMainResult && ex.text === '7', `main result ${JSON.stringify(d)}`)
    check(seen.length === 4, `onResult saw ${seen.length}`)
    check(ex.logs.stdout.join('') === 'before\n', `stdout ${JSON.stringify(ex.logs.stdout)}`)
    return ex.results.map((r) => r.formats().join('+')).join(' ')
  })
  await step('kernel.displayStreamed', async () => {
    // display() reaches onResult while the cell runs: the cell waits for a file
    // that only the callback writes (20 s at most, then it says so).
    const seen = []
    let wrote
    const ex = await sbx.runCode(
      'import os, time\ndisplay("first")\nfor _ in range(400):\n    if os.path.exists("streamed.flag"): break\n    time.sleep(0.05)\ndisplay("second " + ("after the flag" if os.path.exists("streamed.flag") else "without it"))\n3',
      { onResult: (r) => { seen.push(r.text); if (r.text === 'first') wrote = sbx.files.write('streamed.flag', 'x') } })
    await wrote
    check(JSON.stringify(seen) === '["first","second after the flag","3"]', `onResult saw ${JSON.stringify(seen)}`)
    check(ex.results.length === 3 && ex.results[2].isMainResult && ex.text === '3', `results ${JSON.stringify(ex.results)}`)
    return seen.join(', ')
  })
  await step('kernel.repr', async () => {
    const ex = await sbx.runCode([
      'import base64',
      'class R:',
      '    def _repr_html_(self): return "<i>r</i>"',
      '    def _repr_markdown_(self): return "*r*"',
      '    def _repr_svg_(self): return "<svg></svg>"',
      '    def _repr_latex_(self): return "$r$"',
      '    def _repr_json_(self): return {"r": 1}',
      '    def _repr_png_(self): return base64.b64decode("iVBORw0KGgo=")',
      '    def __repr__(self): return "R()"',
      'R()',
    ].join('\n'))
    const r = ex.results[0]
    check(r && r.html === '<i>r</i>' && r.markdown === '*r*' && r.svg === '<svg></svg>' && r.latex === '$r$', JSON.stringify(r))
    check(JSON.stringify(r.json) === '{"r":1}' && r.png === 'iVBORw0KGgo=' && r.text === 'R()', JSON.stringify(r))
    return r.formats().join(',')
  })
  await step('kernel.shell', async () => {
    const ex = await sbx.runCode('n = 3\n!echo shell $n {n + 1}\nlines = !printf "a\\nb\\n"\nlines')
    check(ex.logs.stdout.join('') === 'shell 3 4\n', `stdout ${JSON.stringify(ex.logs.stdout)}`)
    check(ex.text === "['a', 'b']", `x = !cmd gave ${JSON.stringify(ex.text)}`)
    const fail = await sbx.runCode('!exit 4\n_exit_code')
    check(fail.text === '4', `_exit_code ${JSON.stringify(fail.text)}`)
    return ex.text
  })
  await step('kernel.magics', async () => {
    const cd = await sbx.runCode('%cd /tmp\n%pwd')
    check(cd.text === '/tmp', `%pwd after %cd /tmp: ${JSON.stringify(cd.text)} ${JSON.stringify(cd.error)}`)
    await sbx.runCode('%cd -q -')
    const env = await sbx.runCode('%env GREETING=hi\nimport os\nos.environ["GREETING"]')
    check(env.text === 'hi', `%env: ${JSON.stringify(env.text)}`)
    const time = await sbx.runCode('%time sum(range(10))')
    check(time.logs.stdout.join('').includes('Wall time:') && time.text === '45', `%time: ${JSON.stringify(time.logs)} ${time.text}`)
    const pip = await sbx.runCode('%pip install requests')
    check(pip.logs.stderr.join('').includes('pip is not installed'), `%pip: ${JSON.stringify(pip.logs)}`)
    const bad = await sbx.runCode('%nosuchmagic')
    check(bad.error && bad.error.name === 'UsageError', `unknown magic: ${JSON.stringify(bad.error)}`)
    const bash = await sbx.runCode('%%bash\necho from bash\necho $((6 * 7))')
    check(bash.logs.stdout.join('') === 'from bash\n42\n', `%%bash: ${JSON.stringify(bash.logs)}`)
    const wf = await sbx.runCode('%%writefile w.txt\nwritten\n')
    check((await sbx.files.read('/home/user/w.txt')) === 'written\n', `%%writefile: ${JSON.stringify(wf.logs)}`)
    const quiet = await sbx.runCode('1 + 1;')
    check(quiet.results.length === 0, `a trailing ; still showed ${JSON.stringify(quiet.results)}`)
    return 'ok'
  })
  await step('kernel.figure', async () => {
    const ex = await sbx.runCode('import matplotlib.pyplot as plt\nprint("a")\nplt.plot([1, 2])\nplt.show()\nprint("b")\nfig = plt.figure()\nplt.bar([1], [2])\n"done"')
    const pngs = ex.results.filter((r) => r.png)
    check(pngs.length === 2, `${pngs.length} figures, want 2 (plt.show() and the one left open)`)
    check(pngs[0].text.startsWith('<Figure size'), `figure text ${JSON.stringify(pngs[0].text)}`)
    check(ex.text === 'done', `main ${JSON.stringify(ex.text)}`)
    return `${pngs.length} figures`
  })
  await step('kernel.chart', async () => {
    const ex = await sbx.runCode([
      'import matplotlib.pyplot as plt',
      'plt.plot([1, 2, 3], [2, 4, 8], label="growth")',
      'plt.xlabel("Time (s)")',
      'plt.title("Line")',
      'plt.show()',
      'plt.bar(["a", "b"], [3, 5], label="sold")',
      'plt.show()',
    ].join('\n'))
    const [line, bar] = ex.results.map((r) => r.chart)
    check(line && line.type === 'line' && line.title === 'Line' && line.x_unit === 's', `line chart ${JSON.stringify(line)?.slice(0, 300)}`)
    check(JSON.stringify(line.elements[0].points) === '[[1,2],[2,4],[3,8]]' && line.elements[0].label === 'growth', `line points ${JSON.stringify(line.elements)}`)
    check(bar && bar.type === 'bar' && JSON.stringify(bar.elements) === '[{"label":"a","group":"sold","value":3},{"label":"b","group":"sold","value":5}]', `bar chart ${JSON.stringify(bar)}`)
    return `${line.type}, ${bar.type}`
  })
  await step('kernel.executionCount', async () => {
    const a = await sbx.runCode('1')
    const b = await sbx.runCode('2')
    check(b.executionCount === a.executionCount + 1, `execution counts ${a.executionCount}, ${b.executionCount}`)
    return b.executionCount
  })
  await step('kernel.envs', async () => {
    const e = await Sandbox.create({ envs: { SANDBOX_VAR: 'box' }, timeoutMs: 60_000 })
    try {
      const run = await e.runCode('import os\nos.environ.get("SANDBOX_VAR"), os.environ.get("RUN_VAR")', { envs: { RUN_VAR: 'run' } })
      check(run.text === "('box', 'run')", `with envs: ${JSON.stringify(run.text)} ${JSON.stringify(run.error)}`)
      const after = await e.runCode('os.environ.get("SANDBOX_VAR"), os.environ.get("RUN_VAR")')
      check(after.text === "('box', None)", `the next run: ${JSON.stringify(after.text)}`)
      const cmd = await e.commands.run('echo $SANDBOX_VAR $CMD_VAR', { envs: { CMD_VAR: 'cmd' } })
      check(cmd.stdout === 'box cmd\n', `command: ${JSON.stringify(cmd.stdout)}`)
      return run.text
    } finally {
      await e.kill()
    }
  })
  await step('kernel.indented', async () => {
    // As E2B's examples write code: indented as a whole (IPython drops the indent).
    const ex = await sbx.runCode(`
        import numpy
        from PIL import Image
        image = Image.fromarray((numpy.ones((8, 8, 3)) * 200).astype('uint8'))
        image.show()
        print("shown")
        `)
    check(ex.error === undefined, `error ${JSON.stringify(ex.error)}`)
    check(ex.results.length === 1 && ex.results[0].png, `results ${JSON.stringify(ex.results.map((r) => r.formats()))}`)
    return ex.logs.stdout.join('')
  })
  await step('kernel.bash', async () => {
    const e = await Sandbox.create({ envs: { BOX_VAR: 'box' }, timeoutMs: 60_000 })
    try {
      const a = await e.runCode('echo $BOX_VAR $RUN_VAR; cd /tmp; X=kept', { language: 'bash', envs: { RUN_VAR: 'run', BOX_VAR: 'over' } })
      check(a.logs.stdout.join('') === 'over run\n', `first bash run: ${JSON.stringify(a.logs)}`)
      const b = await e.runCode('echo "$BOX_VAR ${RUN_VAR:-unset} $PWD"', { language: 'bash' })
      check(b.logs.stdout.join('') === 'box unset /tmp\n', `second bash run: ${JSON.stringify(b.logs)}`)
      const ctx = await e.createCodeContext({ language: 'bash', cwd: '/tmp' })
      const c = await e.runCode('pwd', { context: ctx })
      check(c.logs.stdout.join('') === '/tmp\n', `bash context: ${JSON.stringify(c.logs)}`)
      return 'ok'
    } finally {
      await e.kill()
    }
  })
  await step('kernel.killed', async () => {
    const e = await Sandbox.create({ timeoutMs: 60_000 })
    const run = e.runCode('import time; time.sleep(300)', { timeoutMs: 300_000 })
    await new Promise((r) => setTimeout(r, 1500))
    await e.kill()
    let err
    try {
      await run
    } catch (x) {
      err = x
    }
    check(err && err.name === 'TimeoutError' && /killed while the request/.test(err.message), `run during kill gave ${err?.name}: ${err?.message}`)
    return err.name
  })
  await step('kernel.stream', async () => {
    // print writes its text and newline apart; a notebook shows one line.
    const lines = []
    await sbx.runCode('print(1)', { onStdout: (m) => lines.push(m.line) })
    check(JSON.stringify(lines) === '["1\\n"]', `onStdout got ${JSON.stringify(lines)}`)
    const bash = await sbx.runCode('pwd; echo $HOME', { language: 'bash' })
    check(bash.logs.stdout.join('') === '/home/user\n/home/user\n', `bash pwd, HOME: ${JSON.stringify(bash.logs.stdout)}`)
    return lines.length
  })
  await step('commands.killed', async () => {
    const e = await Sandbox.create({ timeoutMs: 60_000 })
    const run = e.commands.run('sleep 300')
    await new Promise((r) => setTimeout(r, 1500))
    await e.kill()
    let err
    try {
      await run
    } catch (x) {
      err = x
    }
    check(err && err.name === 'TimeoutError', `a command during kill gave ${err?.name}: ${err?.message}`)
    return err.name
  })
  await step('kernel.javascript', async () => {
    // The default JavaScript context (Node): its globals kept from run to run, the
    // sandbox's directory and environment, envs for one run, output, errors.
    await sbx.runCode('const answer = 41', { language: 'js' })
    const ex = await sbx.runCode('answer + 1', { language: 'javascript' })
    check(ex.text === '42' && ex.results[0].isMainResult, `answer + 1 gave ${JSON.stringify(ex.results)} ${JSON.stringify(ex.error)}`)
    const where = await sbx.runCode('[process.cwd(), process.env.HOME].join(" ")', { language: 'js' })
    check(where.text === '/home/user /home/user', `cwd and HOME ${JSON.stringify(where.text)}`)
    const env = await sbx.runCode('process.env.FOO', { language: 'js', envs: { FOO: 'bar' } })
    check(env.text === 'bar', `envs gave ${JSON.stringify(env.text)}`)
    const after = await sbx.runCode("process.env.FOO || 'unset'", { language: 'js' })
    check(after.text === 'unset', `FOO after its run ${JSON.stringify(after.text)}`)
    const out = await sbx.runCode('console.log("hi from node"); await Promise.resolve(7)', { language: 'js' })
    check(out.logs.stdout.join('') === 'hi from node\n' && out.text === '7', `console.log and await gave ${JSON.stringify(out.logs)} ${JSON.stringify(out.text)}`)
    const err = await sbx.runCode('null.x', { language: 'js' })
    check(err.error && err.error.name === 'TypeError', `null.x gave ${JSON.stringify(err.error)}`)
    // A context of its own: its own globals, its cwd.
    const ctx = await sbx.createCodeContext({ language: 'js', cwd: '/tmp' })
    check(ctx.language === 'javascript', `context ${JSON.stringify(ctx)}`)
    const own = await sbx.runCode('[process.cwd(), typeof answer].join(" ")', { context: ctx })
    check(own.text === '/tmp undefined', `the new context gave ${JSON.stringify(own.text)}`)
    const listed = await sbx.listCodeContexts()
    check(listed.some((c) => c.language === 'javascript' && c.id !== ctx.id), `contexts ${JSON.stringify(listed)}`)
    // TypeScript is refused by name, not run as JavaScript.
    let ts
    try {
      await sbx.runCode('const x: number = 1', { language: 'ts' })
    } catch (e) {
      ts = e
    }
    check(ts && ts.name === 'SandboxError' && ts.message.startsWith('400'), `language ts gave ${ts?.name}: ${ts?.message}`)
    return ex.text
  })
}

if (want('commands')) {
  await step('commands.run', async () => {
    const r = await sbx.commands.run('echo hello; echo oops >&2; pwd')
    check(r.exitCode === 0, `exit ${r.exitCode}`)
    // The session's work dir is at /home/user (see internal/e2b): commands start there.
    check(r.stdout === 'hello\n/home/user\n', `stdout ${JSON.stringify(r.stdout)}`)
    check(r.stderr === 'oops\n', `stderr ${JSON.stringify(r.stderr)}`)
    return r.stdout
  })
  await step('commands.exit', async () => {
    let err
    try {
      await sbx.commands.run('exit 3')
    } catch (e) {
      err = e
    }
    check(err && err.exitCode === 3, `exit 3 gave ${err?.name} ${err?.exitCode}`)
    return err.name
  })
  await step('commands.stdin', async () => {
    const h = await sbx.commands.run('read line; echo "got $line"', { background: true, stdin: true })
    await sbx.commands.sendStdin(h.pid, 'ping\n')
    const r = await h.wait()
    check(r.stdout === 'got ping\n', `stdout ${JSON.stringify(r.stdout)}`)
    return r.stdout
  })
  await step('commands.connect', async () => {
    // A background command outlives its stream: disconnect, then connect again.
    const h = await sbx.commands.run('sleep 1; echo later; exit 5', { background: true })
    await h.disconnect()
    const again = await sbx.commands.connect(h.pid)
    let err
    try {
      await again.wait()
    } catch (e) {
      err = e
    }
    check(err && err.exitCode === 5 && err.stdout === 'later\n', `connect gave ${err?.name} ${err?.exitCode} ${JSON.stringify(err?.stdout)}`)
    return `exit ${err.exitCode}`
  })
  await step('commands.pty', async () => {
    // No terminals: a clear refusal the SDK raises, not a hang.
    let err
    try {
      await sbx.pty.create({ cols: 80, rows: 24, onData: () => {} })
    } catch (e) {
      err = e
    }
    check(err && /pty/.test(err.message), `pty.create gave ${err?.name}: ${err?.message}`)
    return `${err.name}: ${err.message}`
  })
  await step('commands.user', async () => {
    // E2B's user: the name whoami, ls and the files API give, its home and $USER;
    // no sudo (codeexec gives the sandbox no root: see README).
    const r = await sbx.commands.run('whoami; id -gn; echo "$USER $HOME"; ls -ld /home/user | cut -d" " -f3,4')
    check(r.stdout === 'user\nuser\nuser /home/user\nuser user\n', `stdout ${JSON.stringify(r.stdout)}`)
    await sbx.files.write('owned.txt', 'x')
    const info = await sbx.files.getInfo('owned.txt')
    check(info.owner === 'user' && info.group === 'user', `getInfo owner ${info.owner}:${info.group}`)
    let err
    try {
      await sbx.commands.run('sudo true')
    } catch (e) {
      err = e
    }
    check(err && err.exitCode === 127, `sudo gave ${err?.name} ${err?.exitCode}`)
    // Asking for root is refused by name, not run as user; asking for user is fine.
    const asUser = await sbx.commands.run('whoami', { user: 'user' })
    check(asUser.stdout === 'user\n', `user: 'user' gave ${JSON.stringify(asUser.stdout)}`)
    for (const [what, call] of [
      ['commands.run', () => sbx.commands.run('id', { user: 'root' })],
      ['files.write', () => sbx.files.write('/root/x.txt', 'x', { user: 'root' })],
      ['files.list', () => sbx.files.list('/', { user: 'root' })],
    ]) {
      let refused
      try {
        await call()
      } catch (e) {
        refused = e
      }
      check(refused && /"root".*no root or sudo/.test(refused.message), `${what} as root gave ${refused?.name}: ${refused?.message}`)
    }
    return r.stdout.split('\n')[0]
  })
  await step('commands.pid', async () => {
    // The pid the SDK gets is the sandbox's own: its programs can use it.
    const h = await sbx.commands.run('echo $$; exec sleep 600', { background: true })
    const listed = await sbx.commands.list()
    check(listed.some((p) => p.pid === h.pid), `list ${JSON.stringify(listed)} lacks ${h.pid}`)
    const alive = await sbx.commands.run(`kill -0 ${h.pid} && cat /proc/${h.pid}/comm`)
    check(alive.stdout === 'sleep\n', `/proc/${h.pid}/comm ${h.pid}: ${JSON.stringify(alive.stdout)}`)
    check(await sbx.commands.kill(h.pid), 'kill found no process')
    let err
    try {
      await sbx.commands.run(`kill -0 ${h.pid}`)
    } catch (e) {
      err = e
    }
    check(err && err.exitCode === 1, `kill -0 after kill gave ${err?.name} ${err?.exitCode}`)
    const printed = h.stdout.trim()
    check(printed === String(h.pid), `$$ printed ${JSON.stringify(printed)}, pid ${h.pid}`)
    return h.pid
  })
  await step('commands.kill', async () => {
    const h = await sbx.commands.run('sleep 600', { background: true })
    const listed = await sbx.commands.list()
    check(listed.some((p) => p.pid === h.pid), `list ${JSON.stringify(listed)}`)
    check(await sbx.commands.kill(h.pid), 'kill found no process')
    let err
    try {
      await h.wait()
    } catch (e) {
      err = e
    }
    check(err && err.exitCode === -1, `wait after kill gave ${err?.name} ${err?.exitCode}`)
    return err.error
  })
}

if (want('files')) {
  await step('files', async () => {
    await sbx.files.write('/home/user/hello.txt', 'hi there\n')
    const text = await sbx.files.read('/home/user/hello.txt')
    check(text === 'hi there\n', `read ${JSON.stringify(text)}`)
    const list = await sbx.files.list('/home/user')
    check(list.some((e) => e.name === 'hello.txt' && e.type === 'file'), `list ${JSON.stringify(list.map((e) => e.name))}`)
    check(await sbx.files.makeDir('/home/user/sub/dir'), 'makeDir answered false for a new directory')
    check(!(await sbx.files.makeDir('/home/user/sub/dir')), 'makeDir answered true for an existing directory')
    await sbx.files.rename('/home/user/hello.txt', '/home/user/sub/moved.txt')
    check((await sbx.files.read('/home/user/sub/moved.txt')) === 'hi there\n', 'the moved file')
    await sbx.files.rename('/home/user/sub/moved.txt', '/home/user/hello.txt')
    const bin = new Uint8Array([0, 1, 2, 255, 254, 10, 13])
    await sbx.files.write('/home/user/bin.dat', bin.buffer)
    const back = await sbx.files.read('/home/user/bin.dat', { format: 'bytes' })
    check(Buffer.from(back).equals(Buffer.from(bin)), `binary read ${Buffer.from(back).toString('hex')}`)
    await sbx.files.remove('/home/user/bin.dat')
    check(!(await sbx.files.exists('/home/user/bin.dat')), 'bin.dat exists after remove')
    // The quick start's files.list('/'): the sandbox's root.
    const root = await sbx.files.list('/')
    check(root.some((e) => e.name === 'usr' && e.type === 'dir'), `list / ${JSON.stringify(root.map((e) => e.name))}`)
    check(root.some((e) => e.name === 'work' && e.type === 'dir'), `list / ${JSON.stringify(root.map((e) => e.name))}`)
    // E2B's text of a string is without its quotes.
    const ex = await sbx.runCode('open("/work/hello.txt").read()')
    check(ex.text === 'hi there\\n', `python read ${JSON.stringify(ex.text)}`)
    return list.length
  })
}

if (want('files')) {
  await step('files.paths', async () => {
    // The work dir is /home/user inside the sandbox too: the paths code prints are
    // the ones the files API takes.
    const cwd = await sbx.runCode('import os\nos.getcwd()')
    check(cwd.text === '/home/user', `os.getcwd() ${JSON.stringify(cwd.text)}`)
    await sbx.runCode('open("/home/user/from_code.txt", "w").write("code")')
    check((await sbx.files.read('/home/user/from_code.txt')) === 'code', 'a file code wrote at /home/user')
    // Other writable paths of the sandbox: /tmp.
    await sbx.files.write('/tmp/up/t.txt', 'tmp file')
    check((await sbx.files.read('/tmp/up/t.txt')) === 'tmp file', 'read back /tmp/up/t.txt')
    const seen = await sbx.runCode('open("/tmp/up/t.txt").read()')
    check(seen.text === 'tmp file', `code reads /tmp: ${JSON.stringify(seen.text)}`)
    const tmp = await sbx.files.list('/tmp/up')
    check(tmp.length === 1 && tmp[0].path === '/tmp/up/t.txt' && tmp[0].type === 'file', `list /tmp/up ${JSON.stringify(tmp)}`)
    // An empty directory, its details, a symlink's target.
    check(await sbx.files.makeDir('empty'), 'makeDir empty')
    const dir = await sbx.files.getInfo('empty')
    check(dir.type === 'dir' && dir.path === '/home/user/empty' && dir.mode === 0o755, `getInfo(empty) ${JSON.stringify(dir)}`)
    await sbx.commands.run('ln -s from_code.txt link')
    const link = await sbx.files.getInfo('link')
    check(link.symlinkTarget === '/home/user/from_code.txt', `symlink ${JSON.stringify(link)}`)
    await sbx.files.remove('not-there.txt')
    let err
    try {
      await sbx.files.rename('not-there.txt', 'x.txt')
    } catch (e) {
      err = e
    }
    check(err && err.name === 'FileNotFoundError', `rename of a missing file gave ${err?.name}`)
    let ro
    try {
      await sbx.files.write('/usr/x.txt', 'no')
    } catch (e) {
      ro = e
    }
    check(ro, 'a write to the read-only image succeeded')
    return `${tmp.length} in /tmp/up`
  })
  await step('files.gzip', async () => {
    const info = await sbx.files.write('zipped.txt', 'gzip both ways', { gzip: true })
    check(info.path === '/home/user/zipped.txt', `write gave ${JSON.stringify(info)}`)
    const back = await sbx.files.read('zipped.txt', { gzip: true })
    check(back === 'gzip both ways', `read with gzip gave ${JSON.stringify(back)}`)
    check((await sbx.files.read('zipped.txt')) === 'gzip both ways', 'read without gzip')
    return back.length
  })
  await step('files.signedUrls', async () => {
    // A secure sandbox's downloadUrl and uploadUrl: plain fetches, no headers.
    const sec = await Sandbox.create({ secure: true, timeoutMs: 60_000 })
    try {
      await sec.files.write('signed.txt', 'signed content')
      const get = await fetch(await sec.downloadUrl('signed.txt', { useSignatureExpiration: 10_000 }))
      const got = await get.text()
      check(get.status === 200 && got === 'signed content', `download: ${get.status} ${got}`)
      const form = new FormData()
      form.append('file', 'uploaded')
      const up = await fetch(await sec.uploadUrl('up.txt', { useSignatureExpiration: 10_000 }), { method: 'POST', body: form })
      const upBody = await up.json()
      check(up.status === 200 && upBody[0]?.path === '/home/user/up.txt', `upload: ${up.status} ${JSON.stringify(upBody)}`)
      check((await sec.files.read('up.txt')) === 'uploaded', 'the uploaded file')
      const expired = await fetch(await sec.downloadUrl('signed.txt', { useSignatureExpiration: -10_000 }))
      check(expired.status === 401 && (await expired.json()).message === 'signature is already expired', `expired: ${expired.status}`)
      const url = new URL(await sec.downloadUrl('signed.txt'))
      url.searchParams.set('path', 'up.txt') // another file under the same signature
      const forged = await fetch(url)
      check(forged.status === 401, `a signature for another path: ${forged.status}`)
      return `${get.status} ${up.status} ${expired.status} ${forged.status}`
    } finally {
      await sec.kill()
    }
  })
  await step('files.watchDir', async () => {
    await sbx.files.makeDir('watched')
    const events = []
    let seen
    const both = new Promise((resolve) => { seen = resolve })
    const handle = await sbx.files.watchDir('watched', (e) => {
      events.push(`${e.type}:${e.name}`)
      if (events.includes('write:by_code.txt') && events.includes('write:by_api.txt')) seen()
    }, { recursive: true })
    await sbx.runCode('open("watched/by_code.txt", "w").write("x")')
    await sbx.files.write('/home/user/watched/by_api.txt', 'y')
    await Promise.race([both, new Promise((_, reject) => setTimeout(() => reject(new Error(`events ${JSON.stringify(events)}`)), 10_000))])
    await handle.stop()
    return events.join(' ')
  })
}

await step('list', async () => {
  const items = await Sandbox.list({ query: { metadata: { suite: 'codeexec-e2b' } } }).nextItems()
  check(items.some((i) => i.sandboxId === sbx.sandboxId), `list gave ${JSON.stringify(items.map((i) => i.sandboxId))}`)
  const none = await Sandbox.list({ query: { metadata: { suite: 'other' } } }).nextItems()
  check(none.length === 0, `metadata filter other gave ${none.length}`)
  return items.length
})
await step('getInfo', async () => {
  const info = await sbx.getInfo()
  check(info.sandboxId === sbx.sandboxId && info.metadata.suite === 'codeexec-e2b', JSON.stringify(info))
  return info.templateId
})
await step('setTimeout', async () => {
  await sbx.setTimeout(60_000)
  return 'ok'
})
await step('connect', async () => {
  const again = await Sandbox.connect(sbx.sandboxId)
  const ex = await again.runCode('x')
  check(ex.text === '41', `x in the connected sandbox gave ${JSON.stringify(ex.text)}`)
  return again.sandboxId
})
await step('kill', async () => {
  await sbx.kill()
  const gone = await Sandbox.kill(sbx.sandboxId)
  check(gone === false, 'a second kill found the sandbox')
  let err
  try {
    await Sandbox.getInfo(sbx.sandboxId)
  } catch (e) {
    err = e
  }
  check(err && err.name === 'SandboxNotFoundError', `getInfo after kill gave ${err?.name}`)
  return 'killed'
})

if (want('network')) {
  // A sandbox with internet (within the server's --net-allow): its commands go
  // through the egress proxy, as its runs do; one without has no proxy.
  await step('network.commands', async () => {
    const open = await Sandbox.create({ allowInternetAccess: true, timeoutMs: 60_000 })
    try {
      const env = await open.commands.run('echo "$HTTPS_PROXY"')
      check(/^http:\/\/127\.0\.0\.1:\d+\n$/.test(env.stdout), `HTTPS_PROXY ${JSON.stringify(env.stdout)}`)
      // A host beyond the allowlist: the proxy itself answers, refusing it.
      const py = 'import urllib.request, urllib.error\ntry:\n    urllib.request.urlopen("http://beyond.invalid/")\nexcept urllib.error.HTTPError as e:\n    print(e.code, e.headers.get("X-Codeexec-Egress-Error"))'
      const r = await open.commands.run(`python3 -c '${py}'`)
      check(r.stdout === '403 host_not_allowed\n', `a request beyond the allowlist: ${JSON.stringify(r.stdout)} ${JSON.stringify(r.stderr)}`)
      const code = await open.runCode('import os\nos.environ.get("HTTPS_PROXY", "")')
      check(code.text.startsWith('http://127.0.0.1:'), `runCode's HTTPS_PROXY ${JSON.stringify(code.text)}`)
    } finally {
      await open.kill()
    }
    const closed = await Sandbox.create({ timeoutMs: 60_000 })
    try {
      const none = await closed.commands.run('echo "[$HTTPS_PROXY]"')
      check(none.stdout === '[]\n', `a sandbox without network: ${JSON.stringify(none.stdout)}`)
    } finally {
      await closed.kill()
    }
    return 'proxied'
  })
}

if (want('latency')) {
  // The time from Sandbox.create() to the first runCode result, as a user sees it.
  await step('latency', async () => {
    const took = []
    for (let i = 0; i < 9; i++) {
      const t0 = performance.now()
      const s = await Sandbox.create()
      const ex = await s.runCode('1 + 1')
      took.push(performance.now() - t0)
      check(ex.text === '2', `1 + 1 gave ${JSON.stringify(ex.text)}`)
      await s.kill()
    }
    took.sort((a, b) => a - b)
    return `create to first result: p50 ${took[4].toFixed(1)}ms, min ${took[0].toFixed(1)}ms, max ${took[8].toFixed(1)}ms`
  })
}

// The SDK's context calls leave their request timers (60s) armed: do not wait for them.
process.exit(0)
