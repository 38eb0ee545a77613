// Package job says what an execution is asked to do and what it did: the Request and
// its Limits, the Result and its Status. It imports nothing Linux-only, so that the
// faces (the HTTP API, the gateway, the CLI) can use it without the sandbox, as runc's
// libcontainer/configs serves its callers.
package job
