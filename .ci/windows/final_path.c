/* Does GetFinalPathNameByHandleW answer for a directory deeper than 260
 * characters? Windows does; wine 8 fails with ERROR_MORE_DATA (234) even
 * with a buffer of 32767 characters. Usage: final_path.exe DIR (a plain
 * absolute path such as E:\x); it makes DIR\<40-character names>... past
 * 300 characters and asks at each depth. Exit 0 when every answer came. */
#include <windows.h>
#include <stdio.h>
#include <wchar.h>

int wmain(int argc, wchar_t **argv) {
    static wchar_t path[32768], out[32767];
    int failed = 0;
    if (argc != 2) {
        fwprintf(stderr, L"usage: final_path DIR\n");
        return 2;
    }
    swprintf(path, 32768, L"\\\\?\\%ls", argv[1]);
    for (int depth = 0; wcslen(path) < 340; depth++) {
        size_t len = wcslen(path);
        swprintf(path + len, 32768 - len, L"\\%02d-ddddddddddddddddddddddddddddddddddddd", depth);
        CreateDirectoryW(path, NULL);
        HANDLE h = CreateFileW(path, 0, FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE,
                               NULL, OPEN_EXISTING, FILE_FLAG_BACKUP_SEMANTICS, NULL);
        if (h == INVALID_HANDLE_VALUE) {
            wprintf(L"%zu chars: CreateFileW failed, error %lu\n", wcslen(path) - 4, GetLastError());
            return 1;
        }
        SetLastError(0);
        DWORD n = GetFinalPathNameByHandleW(h, out, 32767, 0);
        DWORD err = GetLastError();
        CloseHandle(h);
        if (n == 0 || n >= 32767) {
            wprintf(L"%zu chars: GetFinalPathNameByHandleW returned %lu, error %lu\n",
                    wcslen(path) - 4, n, err);
            failed = 1;
        } else {
            wprintf(L"%zu chars: ok (%lu)\n", wcslen(path) - 4, n);
        }
    }
    return failed;
}
