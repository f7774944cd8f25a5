// Package fault is Neutron's error vocabulary: every failure the API reports
// carries an HTTP status, a Neutron exception type and a message, and renders
// as {"NeutronError": {"type", "message", "detail"}}.
package fault

import (
	"errors"
	"fmt"
	"net/http"
)

// Error is a client-visible Neutron error.
type Error struct {
	Status  int
	Type    string
	Message string
	Detail  string
}

func (e *Error) Error() string { return e.Type + ": " + e.Message }

// New builds an Error with a formatted message.
func New(status int, typ, format string, args ...any) *Error {
	return &Error{Status: status, Type: typ, Message: fmt.Sprintf(format, args...)}
}

// As extracts a *Error from err's chain.
func As(err error) (*Error, bool) {
	var fe *Error
	if errors.As(err, &fe) {
		return fe, true
	}
	return nil, false
}

// BadRequest is Neutron's generic HTTPBadRequest.
func BadRequest(format string, args ...any) *Error {
	return New(http.StatusBadRequest, "HTTPBadRequest", format, args...)
}

// InvalidInput is Neutron's InvalidInput (400).
func InvalidInput(format string, args ...any) *Error {
	return New(http.StatusBadRequest, "InvalidInput", "Invalid input for operation: "+format+".", args...)
}

// NotFound is a "<Type>NotFound" error for a resource id.
func NotFound(typ, what, id string) *Error {
	return New(http.StatusNotFound, typ+"NotFound", "%s %s could not be found.", what, id)
}

// Conflict builds a 409 error.
func Conflict(typ, format string, args ...any) *Error {
	return New(http.StatusConflict, typ, format, args...)
}

// Forbidden is a policy denial.
func Forbidden(format string, args ...any) *Error {
	return New(http.StatusForbidden, "PolicyNotAuthorized", format, args...)
}

// MethodNotAllowed is the 405 for a method a resource does not serve.
func MethodNotAllowed() *Error {
	return New(http.StatusMethodNotAllowed, "HTTPMethodNotAllowed", "The method is not allowed for this resource.")
}
