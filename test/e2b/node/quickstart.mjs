// The quick start of E2B's documentation (e2b.dev/docs/quickstart, "Write code for
// starting Sandbox"), as written there: test/e2b runs it against codeexec.
import 'dotenv/config'
import { Sandbox } from '@e2b/code-interpreter'

const sbx = await Sandbox.create() // By default the sandbox is alive for 5 minutes
const execution = await sbx.runCode('print("hello world")') // Execute Python inside the sandbox
console.log(execution.logs)

const files = await sbx.files.list('/')
console.log(files)
