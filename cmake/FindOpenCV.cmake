# FindOpenCV: OpenCV's libraries as imported targets, for
#
#   find_package(OpenCV 4 REQUIRED COMPONENTS core imgproc imgcodecs)
#
# Why a find module: on Debian, OpenCV's own OpenCVConfig.cmake ships only with libopencv-dev,
# which installs every OpenCV module and what they need. Measured on Debian 12 (bookworm):
# 60 more packages (VTK 9.1, Open MPI, UCX, FFmpeg and GPhoto2 headers among them), 60 MB to
# download and 347 MB on disk, for the three libraries selfsup links. Their split packages,
# libopencv-{core,imgproc,imgcodecs}-dev (in scripts/deps.sh), have headers and libraries but
# no CMake config, so this module finds those.
#
# An OpenCVConfig.cmake, where there is one (libopencv-dev, a source build, OpenCV_DIR), is
# used as it is. Otherwise this module sets OpenCV_FOUND, OpenCV_VERSION (from
# <opencv2/core/version.hpp>), OpenCV_INCLUDE_DIRS, OpenCV_LIBS, and an imported target per
# component named as OpenCV's own config names it (opencv_core, opencv_imgproc, ...), each
# carrying the include directory and the OpenCV modules it depends on.
include(FindPackageHandleStandardArgs)

if(NOT OpenCV_FIND_COMPONENTS)
  set(OpenCV_FIND_COMPONENTS core)
endif()

find_package(OpenCV ${OpenCV_FIND_VERSION} CONFIG QUIET COMPONENTS ${OpenCV_FIND_COMPONENTS})
if(OpenCV_FOUND)
  find_package_handle_standard_args(OpenCV CONFIG_MODE)
  return()
endif()

find_path(OpenCV_INCLUDE_DIR opencv2/core/version.hpp PATH_SUFFIXES opencv4)
if(OpenCV_INCLUDE_DIR)
  file(STRINGS ${OpenCV_INCLUDE_DIR}/opencv2/core/version.hpp _opencv_version_lines
       REGEX "^#define CV_VERSION_(MAJOR|MINOR|REVISION) +[0-9]+")
  set(_opencv_version "")
  foreach(_part MAJOR MINOR REVISION)
    string(REGEX REPLACE ".*#define CV_VERSION_${_part} +([0-9]+).*" "\\1" _number
                         "${_opencv_version_lines}")
    list(APPEND _opencv_version ${_number})
  endforeach()
  list(JOIN _opencv_version "." OpenCV_VERSION)
endif()

# The OpenCV modules each one links (from OpenCV's own CMake files); others are found too,
# without their dependencies.
set(_opencv_deps_imgproc core)
set(_opencv_deps_imgcodecs imgproc core)

foreach(_c IN LISTS OpenCV_FIND_COMPONENTS)
  find_library(OpenCV_${_c}_LIBRARY NAMES opencv_${_c})
  mark_as_advanced(OpenCV_${_c}_LIBRARY)
  if(OpenCV_${_c}_LIBRARY AND OpenCV_INCLUDE_DIR)
    set(OpenCV_${_c}_FOUND TRUE)
  else()
    set(OpenCV_${_c}_FOUND FALSE)
  endif()
endforeach()

find_package_handle_standard_args(OpenCV
  REQUIRED_VARS OpenCV_INCLUDE_DIR
  VERSION_VAR OpenCV_VERSION
  HANDLE_COMPONENTS)
mark_as_advanced(OpenCV_INCLUDE_DIR)

if(OpenCV_FOUND)
  set(OpenCV_INCLUDE_DIRS ${OpenCV_INCLUDE_DIR})
  set(OpenCV_LIBS "")
  set(_opencv_created "")
  foreach(_c IN LISTS OpenCV_FIND_COMPONENTS)
    if(NOT OpenCV_${_c}_FOUND)
      continue()
    endif()
    list(APPEND OpenCV_LIBS opencv_${_c})
    if(NOT TARGET opencv_${_c})
      add_library(opencv_${_c} UNKNOWN IMPORTED)
      set_target_properties(opencv_${_c} PROPERTIES
        IMPORTED_LOCATION ${OpenCV_${_c}_LIBRARY}
        INTERFACE_INCLUDE_DIRECTORIES ${OpenCV_INCLUDE_DIR})
      list(APPEND _opencv_created ${_c})
    endif()
  endforeach()
  foreach(_c IN LISTS _opencv_created)
    foreach(_dep IN LISTS _opencv_deps_${_c})
      if(TARGET opencv_${_dep})
        set_property(TARGET opencv_${_c} APPEND PROPERTY INTERFACE_LINK_LIBRARIES opencv_${_dep})
      endif()
    endforeach()
  endforeach()
endif()
