package v1alpha1

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
)

// Providers returns the names of the providers the status reports on,
// sorted.
func (s *NamespaceOffloadingStatus) Providers() []string {
	return slices.Sorted(maps.Keys(s.RemoteNamespacesConditions))
}

// SelectedProviders returns the names of the providers the status says the
// cluster selector selects (their OffloadingRequired condition is True),
// sorted.
func (s *NamespaceOffloadingStatus) SelectedProviders() []string {
	var names []string
	for _, name := range s.Providers() {
		if meta.IsStatusConditionTrue(s.RemoteNamespacesConditions[name], OffloadingRequiredCondition) {
			names = append(names, name)
		}
	}
	return names
}

// CreationFailedMessage is the message of a Ready condition with reason
// CreationFailedReason: the provider's own reason, then its message.
func CreationFailedMessage(providerReason, providerMessage string) string {
	return providerReason + ": " + providerMessage
}

// SplitCreationFailedMessage undoes CreationFailedMessage: the provider's
// reason and message; ok is false, and message is msg, when msg does not
// start with a reason (a word and a colon).
func SplitCreationFailedMessage(msg string) (reason, message string, ok bool) {
	reason, message, ok = strings.Cut(msg, ":")
	if !ok || strings.ContainsAny(reason, " \t\n") {
		return "", msg, false
	}
	return reason, strings.TrimPrefix(message, " "), true
}

// unreachableNote opens what UnreachableMessage appends.
const unreachableNote = " (provider not reachable: "

// UnreachableMessage appends to the message of a Ready condition why the
// provider could not be read: what the message says may be stale.
func UnreachableMessage(message string, err error) string {
	return fmt.Sprintf("%s%s%v)", message, unreachableNote, err)
}

// SplitUnreachableMessage undoes UnreachableMessage: the message as last
// seen, and why the provider could not be read; ok is false, and last is
// msg, when msg has no such note.
func SplitUnreachableMessage(msg string) (last, why string, ok bool) {
	i := strings.LastIndex(msg, unreachableNote)
	if i < 0 {
		return msg, "", false
	}
	return msg[:i], strings.TrimSuffix(msg[i+len(unreachableNote):], ")"), true
}

// TwinDeleting reports whether a Ready condition with this reason says the
// provider is deleting the twin: TerminatingReason, or TwinNotDeletedReason
// once an unoffload has waited too long for it.
func TwinDeleting(reason string) bool {
	return reason == TerminatingReason || reason == TwinNotDeletedReason
}
