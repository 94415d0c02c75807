package api

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/rehost/rehost/pkg/sigv4"
)

// Error types, as SMS (and AWS JSON 1.1 services) name them.
const (
	ErrInvalidParameter         = "InvalidParameterException"
	ErrMissingRequiredParameter = "MissingRequiredParameterException"
	ErrJobNotFound              = "ReplicationJobNotFoundException"
	ErrJobAlreadyExists         = "ReplicationJobAlreadyExistsException"
	ErrServerCannotBeReplicated = "ServerCannotBeReplicatedException"
	ErrRunLimitExceeded         = "ReplicationRunLimitExceededException"
	ErrNoConnectorsAvailable    = "NoConnectorsAvailableException"
	ErrUnauthorizedOperation    = "UnauthorizedOperationException"
	ErrOperationNotPermitted    = "OperationNotPermittedException"
	ErrInternal                 = "InternalError"
	// AWS's own, for the protocol rather than the operation.
	ErrUnknownOperation = "UnknownOperationException"
	ErrSerialization    = "SerializationException"
	ErrThrottling       = "ThrottlingException"
	ErrRequestTooLarge  = "RequestEntityTooLargeException"
	// rehost's: a source whose certificate is not trusted; Thumbprint holds
	// the one it presents, for the user to compare and accept.
	ErrUntrustedCertificate = "UntrustedCertificateException"
	// rehost's: a source or AWS refused the credentials.
	ErrSourceUnavailable = "SourceUnavailableException"
)

// Error is an API error: its type (the __type of the JSON answer) and a
// message a user can act on. Both the HTTP client and the local service
// return it, so the CLI handles one kind of error.
type Error struct {
	Type       string `json:"__type"`
	Message    string `json:"message"`
	Thumbprint string `json:"thumbprint,omitempty"`
	// Field names the input member the error is about ("name",
	// "settings.region"), for a form to show the error next to it; empty
	// when it is about none in particular.
	Field string `json:"field,omitempty"`
	// Status is the HTTP status it is answered with.
	Status int `json:"-"`
	// RetryAfter is the pause the answer asked for (its Retry-After
	// header), as the client read it.
	RetryAfter time.Duration `json:"-"`
}

func (e *Error) Error() string {
	if e.Message == "" {
		return e.Type
	}
	return e.Message
}

// Errorf returns an *Error of type typ.
func Errorf(typ, format string, args ...any) *Error {
	return &Error{Type: typ, Message: fmt.Sprintf(format, args...), Status: statusOf(typ)}
}

// IsType reports whether err is an *Error of type typ.
func IsType(err error, typ string) bool {
	var e *Error
	return errors.As(err, &e) && e.Type == typ
}

func statusOf(typ string) int {
	switch typ {
	case ErrInternal:
		return http.StatusInternalServerError
	case ErrUnauthorizedOperation:
		return http.StatusForbidden
	case ErrRequestTooLarge:
		return http.StatusRequestEntityTooLarge
	case ErrThrottling:
		return http.StatusTooManyRequests
	}
	return http.StatusBadRequest
}

// authError maps a SigV4 failure to what AWS JSON services answer.
func authError(err error) *Error {
	var se *sigv4.Error
	if !errors.As(err, &se) {
		return &Error{Type: "InvalidSignatureException", Message: err.Error(), Status: http.StatusForbidden}
	}
	typ := "InvalidSignatureException"
	switch se.Kind {
	case sigv4.Missing:
		typ = "MissingAuthenticationTokenException"
	case sigv4.Malformed:
		typ = "IncompleteSignatureException"
	case sigv4.UnknownKey:
		typ = "UnrecognizedClientException"
	case sigv4.Expired:
		typ = "ExpiredTokenException"
	}
	return &Error{Type: typ, Message: se.Message, Status: http.StatusForbidden}
}
