package virtualkubelet

import (
	"fmt"
	"maps"
	"slices"

	"github.com/go-logr/logr"
	vklog "github.com/virtual-kubelet/virtual-kubelet/log"
)

// vkLogger makes the virtual-kubelet library log through logr, with its
// fields as structured keys. Its Debug goes to V(1); Fatal is logged as an
// error and does not exit.
type vkLogger struct {
	l logr.Logger
}

var _ vklog.Logger = vkLogger{}

func (v vkLogger) Debug(args ...any)                 { v.l.V(1).Info(fmt.Sprint(args...)) }
func (v vkLogger) Debugf(format string, args ...any) { v.l.V(1).Info(fmt.Sprintf(format, args...)) }
func (v vkLogger) Info(args ...any)                  { v.l.Info(fmt.Sprint(args...)) }
func (v vkLogger) Infof(format string, args ...any)  { v.l.Info(fmt.Sprintf(format, args...)) }
func (v vkLogger) Warn(args ...any)                  { v.l.Info(fmt.Sprint(args...), "level", "warning") }
func (v vkLogger) Warnf(format string, args ...any) {
	v.l.Info(fmt.Sprintf(format, args...), "level", "warning")
}
func (v vkLogger) Error(args ...any)                 { v.l.Error(nil, fmt.Sprint(args...)) }
func (v vkLogger) Errorf(format string, args ...any) { v.l.Error(nil, fmt.Sprintf(format, args...)) }
func (v vkLogger) Fatal(args ...any)                 { v.Error(args...) }
func (v vkLogger) Fatalf(format string, args ...any) { v.Errorf(format, args...) }

func (v vkLogger) WithField(k string, val any) vklog.Logger {
	return vkLogger{l: v.l.WithValues(k, val)}
}

func (v vkLogger) WithFields(f vklog.Fields) vklog.Logger {
	kv := make([]any, 0, 2*len(f))
	for _, k := range slices.Sorted(maps.Keys(f)) {
		kv = append(kv, k, f[k])
	}
	return vkLogger{l: v.l.WithValues(kv...)}
}

func (v vkLogger) WithError(err error) vklog.Logger {
	return vkLogger{l: v.l.WithValues("error", err)}
}
