package emulator

import (
	"encoding/json"
	"net/http"
	"strings"
)

// jsonAction handles one operation of an AWS JSON 1.1 service (KMS,
// Service Quotas): the request body is the input; the result is marshalled
// as the output.
type jsonAction func(in json.RawMessage) (any, error)

// jsonError is an AWS JSON 1.1 error: its __type and message.
type jsonError struct {
	status int
	typ    string
	msg    string
}

func (e *jsonError) Error() string { return e.typ + ": " + e.msg }

// serveJSON answers an AWS JSON 1.1 request: the operation is the
// X-Amz-Target header's part after the service prefix.
func (e *Emulator) serveJSON(w http.ResponseWriter, r *http.Request, body []byte, prefix string, actions map[string]jsonAction) {
	target := r.Header.Get("X-Amz-Target")
	op, ok := strings.CutPrefix(target, prefix+".")
	h := actions[op]
	if !ok || h == nil || r.Method != http.MethodPost {
		writeJSONError(w, http.StatusBadRequest, "UnknownOperationException", "unknown operation "+target, "")
		return
	}
	if e.delay(r.Context(), op) != nil {
		return
	}
	if e.denied(op) {
		writeJSONError(w, http.StatusBadRequest, "AccessDeniedException", "User: arn:"+e.partition()+":iam::"+e.cfg.AccountID+
			":user/rehost is not authorized to perform: "+e.actionName(prefix, op)+" because no identity-based policy allows it", "")
		return
	}
	if len(body) == 0 {
		body = []byte("{}")
	}
	res, err := h(body)
	if err != nil {
		je, ok := err.(*jsonError)
		if !ok {
			je = &jsonError{http.StatusInternalServerError, "InternalFailure", err.Error()}
		}
		writeJSONError(w, je.status, je.typ, je.msg, "")
		return
	}
	b, err := json.Marshal(res)
	if err != nil {
		writeJSONError(w, http.StatusInternalServerError, "InternalFailure", "encode response: "+err.Error(), "")
		return
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-Requestid", requestID())
	w.Write(b)
}

// actionName is the IAM action of an operation, for AccessDenied messages.
func (e *Emulator) actionName(prefix, op string) string {
	switch prefix {
	case kmsPrefix:
		return "kms:" + op
	case quotasPrefix:
		return "servicequotas:" + op
	}
	return op
}

// denied reports whether Config.DenyOperations names op.
func (e *Emulator) denied(op string) bool {
	for _, d := range e.cfg.DenyOperations {
		if d == op {
			return true
		}
	}
	return false
}

func decodeJSON(in json.RawMessage, v any) error {
	if err := json.Unmarshal(in, v); err != nil {
		return &jsonError{http.StatusBadRequest, "SerializationException", "the request body is not a valid input: " + err.Error()}
	}
	return nil
}
