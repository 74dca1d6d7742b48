/* A stand-in for Windows' bcryptprimitives.dll, which wine 8 lacks.
 *
 * Rust's standard library (1.78 and later) takes its random bytes (HashMap
 * keys, and so on) from ProcessPrng in bcryptprimitives.dll, so without it
 * no Rust program starts under wine 8. This stub gives ProcessPrng real
 * random bytes from RtlGenRandom (advapi32's SystemFunction036), which wine
 * has. It is for running the test suite under wine in CI only; real Windows
 * has the real DLL. Built by .ci/windows.sh:
 *   x86_64-w64-mingw32-gcc -shared -O2 -o bcryptprimitives.dll \
 *       bcryptprimitives.c bcryptprimitives.def -ladvapi32
 */
#include <windows.h>

BOOLEAN NTAPI SystemFunction036(PVOID buffer, ULONG length);

/* Fills data with len random bytes; TRUE on success, as the real one. */
BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG chunk = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
