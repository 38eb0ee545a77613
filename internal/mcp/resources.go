package mcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// Session files are resources, so that hosts can show and fetch them:
//
//	codeexec://sessions/{id}/files/{path}   the file's bytes (text, or a base64 blob)
//	codeexec://sessions/{id}/files          the list of the session's files (JSON)
//
// resources/list lists the files of the caller's sessions, up to maxListed.

// maxListed bounds the files resources/list names: the newest sessions' first.
const maxListed = 1000

func (s *Server) addResources() {
	s.srv.AddResourceTemplate(&sdk.ResourceTemplate{
		Name:        "session-file",
		Title:       "A file of a session",
		URITemplate: "codeexec://sessions/{id}/files/{+path}",
		Description: "A file in the work dir /work of a codeexec session: UTF-8 text as text, anything else as a base64 blob.",
	}, s.readFile)
	s.srv.AddResourceTemplate(&sdk.ResourceTemplate{
		Name:        "session-files",
		Title:       "The files of a session",
		URITemplate: "codeexec://sessions/{id}/files",
		Description: "The regular files of a codeexec session's work dir, as JSON: {\"files\": [{\"path\", \"size\", \"uri\"}], \"truncated\"}.",
		MIMEType:    "application/json",
	}, s.readFile)
	// The SDK lists only resources added in advance; a tenant's files come and go.
	s.srv.AddReceivingMiddleware(func(next sdk.MethodHandler) sdk.MethodHandler {
		return func(ctx context.Context, method string, req sdk.Request) (sdk.Result, error) {
			if method != "resources/list" {
				return next(ctx, method, req)
			}
			return s.listResources(ctx, req)
		}
	})
}

// readFile reads a file of a session, or the list of them.
func (s *Server) readFile(ctx context.Context, req *sdk.ReadResourceRequest) (*sdk.ReadResourceResult, error) {
	uri := req.Params.URI
	owner, err := ownerOf(ctx, req.Extra)
	if err != nil {
		s.log.Error("mcp resource read", "err", err)
		return nil, sdk.ResourceNotFoundError(uri)
	}
	id, p, err := parseFileURI(uri)
	if err != nil {
		return nil, resourceError(uri, &Error{Code: "invalid_uri", Message: fmt.Sprintf("%q is %v", uri, err)})
	}
	if p == "" {
		files, truncated, err := s.sb.ListFiles(owner, id)
		if err != nil {
			return nil, resourceError(uri, err)
		}
		list := listFilesOutput{SessionID: id, Files: []fileOutput{}, Truncated: truncated}
		for _, f := range files {
			list.Files = append(list.Files, fileOutput{Path: f.Path, Size: f.Size, URI: fileURI(id, f.Path)})
		}
		data, err := json.Marshal(list)
		if err != nil {
			return nil, err
		}
		return &sdk.ReadResourceResult{Contents: []*sdk.ResourceContents{{URI: uri, MIMEType: "application/json", Text: string(data)}}}, nil
	}
	data, err := s.sb.ReadFile(owner, id, p)
	if err != nil {
		return nil, resourceError(uri, err)
	}
	return &sdk.ReadResourceResult{Contents: []*sdk.ResourceContents{fileContents(id, p, data)}}, nil
}

// resourceError answers a read that failed: an unknown session or file is the
// protocol's "resource not found", anything else an error with the API's code.
func resourceError(uri string, err error) error {
	var e *Error
	if !errors.As(err, &e) {
		return err
	}
	switch e.Code {
	case "session_not_found", "file_not_found", "session_ended":
		nf := sdk.ResourceNotFoundError(uri).(*jsonrpc.Error)
		nf.Message = fmt.Sprintf("Resource not found: %s (%s)", e.Message, e.Code)
		return nf
	}
	return &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: fmt.Sprintf("%s (%s)", e.Message, e.Code)}
}

// listResources lists the files of the caller's sessions, newest session first,
// at most maxListed of them. The list is one page: it has no cursor.
func (s *Server) listResources(ctx context.Context, req sdk.Request) (sdk.Result, error) {
	res := &sdk.ListResourcesResult{Resources: []*sdk.Resource{}}
	owner, err := ownerOf(ctx, req.GetExtra())
	if err != nil {
		s.log.Error("mcp resource list", "err", err)
		return res, nil
	}
	sessions := s.sb.List(owner)
	for i := len(sessions) - 1; i >= 0 && len(res.Resources) < maxListed; i-- {
		id := sessions[i].ID
		files, _, err := s.sb.ListFiles(owner, id)
		if err != nil {
			continue // ended or gone since List: nothing to show
		}
		for _, f := range files {
			if len(res.Resources) == maxListed {
				break
			}
			res.Resources = append(res.Resources, &sdk.Resource{URI: fileURI(id, f.Path), Name: f.Path,
				Title: f.Path + " (" + id + ")", MIMEType: mimeByName(f.Path), Size: f.Size})
		}
	}
	return res, nil
}
